//! Runtime settings: the six values an admin may change while everything runs (the original's
//! `settings`). The config file gives each its default; a value an admin set in the store wins.
//! Both processes read the effective values through [`crate::store::settings::load`] and re-read
//! them on `NOTIFY pgmon_settings`.

use crate::Config;
use std::time::Duration;

/// One runtime setting. Names, labels, descriptions and ranges are the original's, so its Settings
/// page and its error texts (`<label>: допустимо от MIN до MAX`) work unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    CollectInterval,
    SizeUpdateInterval,
    DbCheckInterval,
    RetentionMonths,
    AuditRetentionDays,
    LogsRetentionDays,
}

impl Key {
    pub const ALL: [Key; 6] = [
        Key::CollectInterval,
        Key::SizeUpdateInterval,
        Key::DbCheckInterval,
        Key::RetentionMonths,
        Key::AuditRetentionDays,
        Key::LogsRetentionDays,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Key::CollectInterval => "collect_interval",
            Key::SizeUpdateInterval => "size_update_interval",
            Key::DbCheckInterval => "db_check_interval",
            Key::RetentionMonths => "retention_months",
            Key::AuditRetentionDays => "audit_retention_days",
            Key::LogsRetentionDays => "logs_retention_days",
        }
    }

    pub fn from_name(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The original's label, used in its error texts and in the audit's `old → new` details.
    pub fn label(self) -> &'static str {
        match self {
            Key::CollectInterval => "Интервал сбора статистики",
            Key::SizeUpdateInterval => "Интервал обновления размеров",
            Key::DbCheckInterval => "Интервал проверки БД",
            Key::RetentionMonths => "Срок хранения данных",
            Key::AuditRetentionDays => "Срок хранения аудита",
            Key::LogsRetentionDays => "Срок хранения логов",
        }
    }

    /// The original's description, with the unit.
    pub fn description(self) -> &'static str {
        match self {
            Key::CollectInterval => "Интервал сбора статистики (сек)",
            Key::SizeUpdateInterval => "Интервал обновления размеров БД (сек)",
            Key::DbCheckInterval => "Интервал проверки новых/удалённых БД (сек)",
            Key::RetentionMonths => "Срок хранения данных (месяцев)",
            Key::AuditRetentionDays => "Срок хранения аудита (дней)",
            Key::LogsRetentionDays => "Срок хранения логов (дней)",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Key::CollectInterval | Key::SizeUpdateInterval | Key::DbCheckInterval => "s",
            Key::RetentionMonths => "months",
            Key::AuditRetentionDays | Key::LogsRetentionDays => "days",
        }
    }

    /// The values an admin may set (the original's ranges). The config file is not held to them:
    /// tests and labs run the collector every second.
    pub fn range(self) -> (i64, i64) {
        match self {
            Key::CollectInterval => (60, 86_400),
            Key::SizeUpdateInterval | Key::DbCheckInterval => (300, 86_400),
            Key::RetentionMonths => (1, 120),
            Key::AuditRetentionDays | Key::LogsRetentionDays => (7, 3650),
        }
    }

    /// `Ok` when an admin may set `v`, else the original's 400 text.
    pub fn check(self, v: i64) -> Result<(), String> {
        let (min, max) = self.range();
        if (min..=max).contains(&v) {
            Ok(())
        } else {
            Err(format!("{}: допустимо от {min} до {max}", self.label()))
        }
    }

    /// The config file's value: the default until an admin sets one.
    pub fn default_in(self, cfg: &Config) -> i64 {
        let c = &cfg.collector;
        let v = match self {
            Key::CollectInterval => c.collect_interval_secs,
            Key::SizeUpdateInterval => c.size_update_interval_secs,
            Key::DbCheckInterval => c.db_check_interval_secs,
            Key::RetentionMonths => u64::from(c.retention_months),
            Key::AuditRetentionDays => u64::from(cfg.api.audit_retention_days),
            Key::LogsRetentionDays => u64::from(c.logs_retention_days),
        };
        i64::try_from(v).unwrap_or(i64::MAX)
    }
}

/// The effective value of every setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    values: [i64; 6],
}

impl Settings {
    /// The config file's values.
    pub fn defaults(cfg: &Config) -> Self {
        let mut values = [0; 6];
        for (i, k) in Key::ALL.into_iter().enumerate() {
            values[i] = k.default_in(cfg);
        }
        Self { values }
    }

    fn index(key: Key) -> usize {
        Key::ALL.iter().position(|k| *k == key).unwrap_or(0)
    }

    pub fn get(&self, key: Key) -> i64 {
        self.values[Self::index(key)]
    }

    pub fn set(&mut self, key: Key, v: i64) {
        self.values[Self::index(key)] = v;
    }

    fn secs(&self, key: Key) -> Duration {
        Duration::from_secs(u64::try_from(self.get(key)).unwrap_or(1).max(1))
    }

    fn positive_u32(&self, key: Key) -> u32 {
        u32::try_from(self.get(key)).unwrap_or(u32::MAX).max(1)
    }

    pub fn collect_interval(&self) -> Duration {
        self.secs(Key::CollectInterval)
    }

    pub fn size_update_interval(&self) -> Duration {
        self.secs(Key::SizeUpdateInterval)
    }

    pub fn db_check_interval(&self) -> Duration {
        self.secs(Key::DbCheckInterval)
    }

    pub fn retention_months(&self) -> u32 {
        self.positive_u32(Key::RetentionMonths)
    }

    pub fn audit_retention_days(&self) -> u32 {
        self.positive_u32(Key::AuditRetentionDays)
    }

    pub fn logs_retention_days(&self) -> u32 {
        self.positive_u32(Key::LogsRetentionDays)
    }

    /// `label: old → new; …` for every key whose value differs (the original's audit text).
    pub fn changes_from(&self, old: &Settings) -> String {
        Key::ALL
            .into_iter()
            .filter(|k| old.get(*k) != self.get(*k))
            .map(|k| format!("{}: {} → {}", k.label(), old.get(k), self.get(k)))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_answer_with_the_originals_text() {
        assert_eq!(Key::CollectInterval.check(60), Ok(()));
        assert_eq!(
            Key::CollectInterval.check(59),
            Err("Интервал сбора статистики: допустимо от 60 до 86400".into())
        );
        assert_eq!(
            Key::LogsRetentionDays.check(3651),
            Err("Срок хранения логов: допустимо от 7 до 3650".into())
        );
    }

    #[test]
    fn defaults_come_from_the_config_and_changes_read_old_to_new() {
        let cfg = Config::from_toml_and_env(
            "[store]\nurl = \"postgres://h/db\"\n[collector]\ncollect_interval_secs = 5\n",
            "test.toml",
            std::iter::empty(),
        )
        .expect("config");
        let d = Settings::defaults(&cfg);
        assert_eq!(d.collect_interval(), Duration::from_secs(5));
        assert_eq!(d.audit_retention_days(), 90);
        assert_eq!(d.logs_retention_days(), 30);
        let mut n = d;
        n.set(Key::CollectInterval, 60);
        n.set(Key::RetentionMonths, 6);
        assert_eq!(
            n.changes_from(&d),
            "Интервал сбора статистики: 5 → 60; Срок хранения данных: 12 → 6"
        );
    }
}
