//! Runtime settings (`/settings`) and the system log (`/logs`) as an admin's browser uses them.

use super::{tokens, with_users};
use pgmon_tests::http::call;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn value(s: &Value, key: &str) -> String {
    s[key]["value"].as_str().unwrap_or("?").to_string()
}

#[tokio::test]
async fn settings_are_admin_only_ranged_audited_and_kept_in_the_store() {
    let (env, api) = with_users("audit_retention_days = 45").await;
    let [admin, operator, viewer] = tokens(&api).await;
    for prefix in ["", "/api"] {
        let (st, s) = call("GET", &api.url(&format!("{prefix}/settings")), Some(&admin), None).await;
        assert_eq!(st, StatusCode::OK, "{s}");
        let keys: Vec<&String> = s.as_object().expect("object").keys().collect();
        assert_eq!(keys.len(), 6, "{s}");
        assert_eq!(value(&s, "collect_interval"), "600");
        assert_eq!(
            value(&s, "audit_retention_days"),
            "45",
            "the config file is the default"
        );
        assert_eq!(value(&s, "logs_retention_days"), "30");
        let c = &s["collect_interval"];
        assert_eq!(c["key"], "collect_interval");
        assert_eq!(c["value_type"], "int");
        assert_eq!(c["description"], "Интервал сбора статистики (сек)");
        assert_eq!(c["source"], "config");
        assert!(c["updated_at"].is_string());
        assert_eq!((c["min"].as_i64(), c["max"].as_i64()), (Some(60), Some(86400)));
    }
    for t in [&operator, &viewer] {
        assert_eq!(
            call("GET", &api.url("/settings"), Some(t), None).await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            call(
                "PUT",
                &api.url("/settings"),
                Some(t),
                Some(&json!({"collect_interval": 120}))
            )
            .await
            .0,
            StatusCode::FORBIDDEN
        );
    }

    // Out of range: the original's text, and nothing written even for the valid key beside it.
    for (body, text) in [
        (
            json!({"collect_interval": 59}),
            "Интервал сбора статистики: допустимо от 60 до 86400",
        ),
        (
            json!({"size_update_interval": 120, "retention_months": 6}),
            "Интервал обновления размеров: допустимо от 300 до 86400",
        ),
        (
            json!({"retention_months": 6, "logs_retention_days": 3651}),
            "Срок хранения логов: допустимо от 7 до 3650",
        ),
        (
            json!({"audit_retention_days": 6}),
            "Срок хранения аудита: допустимо от 7 до 3650",
        ),
        (json!({}), "Нет данных для обновления"),
        (json!({"collect_interval": null}), "Нет данных для обновления"),
    ] {
        let (st, r) = call("PUT", &api.url("/api/settings"), Some(&admin), Some(&body)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {r}");
        assert_eq!(r["detail"], text, "{body}");
    }
    for body in [
        json!({"collect_interval": "120"}),
        json!({"collect_intervall": 120}),
    ] {
        let (st, r) = call("PUT", &api.url("/settings"), Some(&admin), Some(&body)).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {r}");
        assert!(
            r["detail"]
                .as_str()
                .is_some_and(|d| d.contains("collect_interval")),
            "{r}"
        );
    }
    let (_, s) = call("GET", &api.url("/settings"), Some(&admin), None).await;
    assert_eq!(
        value(&s, "retention_months"),
        "12",
        "a refused change wrote nothing"
    );

    let body = json!({"collect_interval": 120, "retention_months": 6, "db_check_interval": 1800});
    let (st, s) = call("PUT", &api.url("/api/settings"), Some(&admin), Some(&body)).await;
    assert_eq!(st, StatusCode::OK, "{s}");
    assert_eq!(value(&s, "collect_interval"), "120");
    assert_eq!(value(&s, "retention_months"), "6");
    assert_eq!(s["collect_interval"]["source"], "admin");
    assert_eq!(s["collect_interval"]["updated_by"], "admin");
    assert_eq!(s["collect_interval"]["default"], 600);
    assert_eq!(s["size_update_interval"]["source"], "config");

    // Audited with old -> new for what changed (db_check_interval was already 1800).
    let (_, page) = call(
        "GET",
        &api.url("/audit/sessions?event_type=settings_update"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(page["total"], 1, "{page}");
    let e = &page["items"][0];
    assert_eq!(e["username"], "admin");
    assert_eq!(
        e["details"],
        "Интервал сбора статистики: 600 → 120; Срок хранения данных: 12 → 6"
    );
    let (_, stats) = call("GET", &api.url("/audit/sessions/stats"), Some(&admin), None).await;
    assert_eq!(stats["actions_today"], 1, "{stats}");
    let (_, logs) = call(
        "GET",
        &api.url("/logs?source=system&search=settings+changed"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(logs["total"], 1, "{logs}");
    assert_eq!(logs["items"][0]["details"], e["details"]);

    // The same values again change nothing and are not audited again.
    let (st, _) = call("PUT", &api.url("/settings"), Some(&admin), Some(&body)).await;
    assert_eq!(st, StatusCode::OK);
    let (_, page) = call(
        "GET",
        &api.url("/audit/sessions?event_type=settings_update"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(page["total"], 1);

    // The store holds them: a restarted API with other config defaults still answers 120, while a
    // setting nobody changed follows the new file.
    drop(api);
    let text = std::fs::read_to_string(&env.config_path).expect("config");
    std::fs::write(
        &env.config_path,
        text + "[collector]\ncollect_interval_secs = 300\nsize_update_interval_secs = 900\n",
    )
    .expect("config");
    let api = env.spawn_api().await;
    let [admin, _, _] = tokens(&api).await;
    let (_, s) = call("GET", &api.url("/settings"), Some(&admin), None).await;
    assert_eq!(value(&s, "collect_interval"), "120");
    assert_eq!(value(&s, "size_update_interval"), "900");
    assert_eq!(s["collect_interval"]["default"], 300);
}

#[tokio::test]
async fn the_system_log_filters_pages_and_counts() {
    let (env, api) = with_users("").await;
    let [admin, operator, _] = tokens(&api).await;
    let store = env.db.pool().await;
    // The API logs its own start.
    let (st, page) = call("GET", &api.url("/api/logs?source=system"), Some(&admin), None).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|e| e["message"] == "api started" && e["process"] == "api"),
        "{page}"
    );
    // Entries as the collectors write them, over the last days (inserted at known times).
    sqlx::query(
        "INSERT INTO system_log (at, level, source, message, details, process) VALUES
         (now() - interval '3 days', 'error', 'collector_stats', 'statistics: 1 of 3 servers failed',
          'Billing-DB: timeout: connect: no answer within 5.0 s', 'collector'),
         (now() - interval '3 days' + interval '1 minute', 'info', 'collector_stats', 'statistics: 3 servers OK', NULL, 'collector'),
         (now() - interval '1 day', 'warning', 'collector_sizes', 'SSH to server billing-db failed', 'ssh: timeout', 'collector'),
         (now() - interval '1 minute', 'info', 'maintenance', 'maintenance done', 'partitions created 0', 'collector'),
         (now(), 'error', 'collector_db_info', 'database list: 1 of 1 servers failed', 'x: auth_failed: no', 'collector'),
         (now(), 'warning', 'system', 'the store was unreachable for 12 s', NULL, 'collector')",
    )
    .execute(&store)
    .await
    .expect("seed");
    let get = |q: &str| {
        let (url, admin, q) = (api.url(&format!("/logs{q}")), admin.clone(), q.to_string());
        async move {
            let (st, page) = call("GET", &url, Some(&admin), None).await;
            assert_eq!(st, StatusCode::OK, "{q}: {page}");
            page
        }
    };
    let messages = |p: &Value| -> Vec<String> {
        p["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|e| e["message"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let errors = get("?level=error").await;
    assert_eq!(errors["total"], 2);
    assert_eq!(
        messages(&errors),
        [
            "database list: 1 of 1 servers failed",
            "statistics: 1 of 3 servers failed"
        ],
        "newest first"
    );
    assert_eq!(get("?source=collector_stats").await["total"], 2);
    // Case-insensitive, in the message or the details; % and _ are literal.
    let billing = get("?search=BILLING").await;
    assert_eq!(billing["total"], 2, "{billing}");
    assert_eq!(get("?search=100%25").await["total"], 0);
    let day = (chrono::Utc::now() - chrono::Duration::days(3))
        .format("%Y-%m-%d")
        .to_string();
    let that_day = get(&format!("?date_from={day}&date_to={day}")).await;
    assert_eq!(that_day["total"], 2, "{that_day}");
    let until = get(&format!("?date_to={day}&level=info")).await;
    assert_eq!(messages(&until), ["statistics: 3 servers OK"]);
    let all = get("").await["total"].as_i64().expect("total");
    assert!(all >= 7, "six seeded and the start");
    let p1 = get("?limit=2&offset=0").await;
    let p2 = get("?limit=2&offset=2").await;
    assert_eq!((p1["limit"].as_i64(), p1["offset"].as_i64()), (Some(2), Some(0)));
    assert_eq!(p1["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(p1["total"], all);
    assert_ne!(messages(&p1), messages(&p2));
    let stats = call("GET", &api.url("/api/logs/stats"), Some(&admin), None)
        .await
        .1;
    assert_eq!(stats["total"], all);
    assert_eq!(stats["errors_today"], 1, "{stats}");
    assert!(stats["warnings_today"].as_i64() >= Some(1), "{stats}");

    for bad in [
        "?level=fatal",
        "?source=nginx",
        "?limit=0",
        "?limit=501",
        "?date_from=yesterday",
    ] {
        let (st, r) = call("GET", &api.url(&format!("/logs{bad}")), Some(&admin), None).await;
        assert!(st.is_client_error(), "{bad}: {st}");
        assert!(r["detail"].is_string(), "{bad}: {r}");
    }
    assert_eq!(
        call("GET", &api.url("/logs"), Some(&operator), None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call("GET", &api.url("/logs/stats"), None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
}
