//! Tests of [`super::finish`]: defaults, Consul's rules, warnings, autopilot keys and the
//! provider check, through the providers of this build.

use super::*;

fn base() -> PartialConfig {
    PartialConfig {
        data_dir: Some("/tmp/x".into()),
        bind_addr: Some("127.0.0.1".into()),
        node_name: Some("n1".into()),
        ..Default::default()
    }
}

/// The providers of this build, as the CLI passes them.
fn built(p: PartialConfig) -> Result<Built, ConfigErrors> {
    finish(p, vec![], &crate::join::registry())
}

fn errors_of(p: PartialConfig) -> String {
    built(p).unwrap_err().to_string()
}

/// `-1` turns the HTTP or the HTTPS API off (Consul's meaning), never both; an HTTPS port
/// without a certificate does not start (fail closed).
#[test]
fn api_ports_turn_off_with_minus_one_and_https_needs_a_certificate() {
    let ports = |http, https| PartialConfig {
        ports: Ports {
            http,
            https,
            ..Default::default()
        },
        ..base()
    };
    assert!(errors_of(ports(Some(-1), None)).contains("ports.http and ports.https are both off"));
    assert!(errors_of(ports(None, Some(8501))).contains(
        "ports.https = 8501 needs a certificate: set tls.https.cert_file and tls.https.key_file"
    ));
    assert!(errors_of(ports(Some(-2), None)).contains("ports.http = -2 is not a port"));
    assert!(errors_of(ports(None, Some(70000))).contains("or -1 for off"));
    let c = built(ports(Some(9500), Some(-1))).unwrap().config;
    assert_eq!((c.ports.http, c.ports.https), (Some(9500), None));
}

#[test]
fn defaults_follow_consul() {
    let c = built(base()).unwrap().config;
    assert!(!c.server && c.leave_on_terminate && !c.skip_leave_on_interrupt);
    assert_eq!(
        c.ports,
        ListenPorts {
            http: Some(8500),
            https: None,
            serf_lan: 8301,
            server: 8300
        }
    );
    assert_eq!(c.retry_interval, Duration::from_secs(30));
    assert_eq!(c.datacenter, "dc1");
    assert_eq!(c.autopilot, AutopilotSettings::default());
    let s = built(PartialConfig {
        server: Some(true),
        ..base()
    })
    .unwrap()
    .config;
    assert!(!s.leave_on_terminate && s.skip_leave_on_interrupt);
}

#[test]
fn consul_rules_are_errors() {
    assert!(errors_of(PartialConfig {
        bootstrap_expect: Some(3),
        ..base()
    })
    .contains("requires 'server = true'"));
    let both = PartialConfig {
        server: Some(true),
        bootstrap: Some(true),
        bootstrap_expect: Some(3),
        ..base()
    };
    assert!(errors_of(both).contains("mutually exclusive"));
    assert!(errors_of(PartialConfig {
        data_dir: None,
        ..base()
    })
    .contains("data_dir is required"));
    assert!(errors_of(PartialConfig {
        retry_interval: Some("30".into()),
        ..base()
    })
    .contains("retry_interval"));
    assert!(errors_of(PartialConfig {
        bind_addr: Some("1.2.3".into()),
        ..base()
    })
    .contains("bind_addr"));
    assert!(errors_of(PartialConfig {
        encrypt: Some("abc".into()),
        ..base()
    })
    .contains("encrypt"));
    assert!(errors_of(PartialConfig {
        node_name: Some("a b".into()),
        ..base()
    })
    .contains("node_name \"a b\": character ' ' is not allowed"));
}

#[test]
fn expect_one_and_even_warn() {
    let one = built(PartialConfig {
        server: Some(true),
        bootstrap_expect: Some(1),
        ..base()
    })
    .unwrap();
    assert!(one.config.bootstrap && one.config.bootstrap_expect == 0);
    assert!(one
        .warnings
        .iter()
        .any(|w| w.contains("bootstrap_expect = 1")));
    let four = built(PartialConfig {
        server: Some(true),
        bootstrap_expect: Some(4),
        ..base()
    })
    .unwrap();
    assert!(four.warnings.iter().any(|w| w.contains("even")));
}

#[test]
fn autopilot_keys_are_checked_and_kept_as_given() {
    let c = built(PartialConfig {
        ap_cleanup_dead_servers: Some(false),
        ap_last_contact_threshold: Some("1s".into()),
        ap_min_quorum: Some(3),
        ..base()
    })
    .unwrap()
    .config;
    assert_eq!(
        c.autopilot,
        AutopilotSettings {
            cleanup_dead_servers: Some(false),
            last_contact_threshold: Some(Duration::from_secs(1)),
            min_quorum: Some(3),
            ..AutopilotSettings::default()
        }
    );
    let e = errors_of(PartialConfig {
        ap_server_stabilization_time: Some("soon".into()),
        ap_max_trailing_logs: Some(-1),
        ..base()
    });
    assert!(
        e.contains("autopilot.server_stabilization_time: \"soon\" is not a duration")
            && e.contains("autopilot.max_trailing_logs = -1"),
        "{e}"
    );
}

/// A translated legacy entry meets the registry: accepted where the provider is compiled
/// in, refused with the reason where it is not.
#[test]
fn legacy_entries_are_checked_against_the_providers_of_this_build() {
    use super::super::legacy::LegacyCloud;
    let p = PartialConfig {
        legacy_cloud: LegacyCloud {
            ec2_tag_key: Some("role".into()),
            ec2_tag_value: Some("consul".into()),
            ..Default::default()
        },
        ..base()
    };
    assert_eq!(built(p).is_ok(), cfg!(feature = "aws"));
    let g = PartialConfig {
        legacy_cloud: LegacyCloud {
            gce_tag_value: Some("consul".into()),
            ..Default::default()
        },
        ..base()
    };
    if cfg!(feature = "gce") {
        assert!(built(g).is_ok());
    } else {
        assert!(errors_of(g).contains("provider \"gce\" is not compiled into this build"));
    }
}

#[test]
fn reap_timeouts_default_to_consul_and_short_ones_warn_once_each() {
    let c = built(base()).unwrap();
    assert_eq!(c.config.reconnect_timeout, Duration::from_secs(72 * 3600));
    assert_eq!(c.config.tombstone_timeout, Duration::from_secs(24 * 3600));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    let at_floor = built(PartialConfig {
        reconnect_timeout: Some("8h".into()),
        tombstone_timeout: Some("12h".into()),
        ..base()
    })
    .unwrap();
    assert_eq!(
        at_floor.config.reconnect_timeout,
        Duration::from_secs(8 * 3600)
    );
    assert!(at_floor.warnings.is_empty(), "{:?}", at_floor.warnings);

    let short = built(PartialConfig {
        reconnect_timeout: Some("5s".into()),
        tombstone_timeout: Some("1m".into()),
        ..base()
    })
    .unwrap();
    assert_eq!(short.config.reconnect_timeout, Duration::from_secs(5));
    assert_eq!(short.config.tombstone_timeout, Duration::from_secs(60));
    assert_eq!(short.warnings.len(), 2, "{:?}", short.warnings);
    assert!(
        short.warnings[0].starts_with("reconnect_timeout = \"5s\" is below Consul's minimum of 8h")
            && short.warnings[0].contains("forgotten everywhere")
            && short.warnings[1].starts_with("tombstone_timeout = \"1m\""),
        "{:?}",
        short.warnings
    );

    let e = errors_of(PartialConfig {
        reconnect_timeout: Some("500ms".into()),
        tombstone_timeout: Some("a day".into()),
        ..base()
    });
    assert!(
        e.contains("reconnect_timeout \"500ms\" is too short: use at least 1s")
            && e.contains("tombstone_timeout: "),
        "{e}"
    );
}

#[test]
fn kv_tombstone_ttl_defaults_to_15m_and_takes_a_go_duration_of_at_least_1s() {
    assert_eq!(
        built(base()).unwrap().config.kv_tombstone_ttl,
        Duration::from_secs(900)
    );
    let ttl = |v: &str| PartialConfig {
        kv_tombstone_ttl: Some(v.into()),
        ..base()
    };
    assert_eq!(
        built(ttl("90s")).unwrap().config.kv_tombstone_ttl,
        Duration::from_secs(90)
    );
    assert!(errors_of(ttl("500ms")).contains("kv_tombstone_ttl \"500ms\" is too short"));
    assert!(errors_of(ttl("soon")).starts_with("kv_tombstone_ttl: "));
}

/// `telemetry`: Prometheus off and the host name in gauge names unless asked (Consul's
/// defaults); a retention that is not a duration names the key and an example.
#[test]
fn telemetry_defaults_follow_consul() {
    let c = built(base()).unwrap().config;
    assert_eq!(c.telemetry, TelemetrySettings::default());
    assert!(c.telemetry.prometheus_retention_time.is_zero() && !c.telemetry.disable_hostname);
    let set = built(PartialConfig {
        telemetry_prometheus_retention_time: Some("2m".into()),
        telemetry_disable_hostname: Some(true),
        ..base()
    })
    .unwrap()
    .config;
    assert_eq!(
        set.telemetry.prometheus_retention_time,
        Duration::from_secs(120)
    );
    assert!(set.telemetry.disable_hostname);
    let e = errors_of(PartialConfig {
        telemetry_prometheus_retention_time: Some("a minute".into()),
        ..base()
    });
    assert!(
        e.contains("telemetry.prometheus_retention_time: ") && e.contains("\"60s\""),
        "{e}"
    );
}
