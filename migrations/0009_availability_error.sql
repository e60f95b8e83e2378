-- Why a server was down, in words an operator can act on ("the server asks for a password and none is
-- stored"), beside the coarse class. Written by pgmon (never the monitored server's own text).
ALTER TABLE availability ADD COLUMN error text;
