-- Server-wide reads of the newest raw slots (history tails, rollup refresh) filter on server and time
-- across all databases; the primary keys lead with (server_id, datname), which made such a read scan
-- every database's rows of the partition. The write cost is one more index entry per snapshot row.
CREATE INDEX stat_database_server_slot ON stat_database (server_id, slot);
CREATE INDEX db_size_server_slot ON db_size (server_id, slot);
