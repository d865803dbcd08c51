//! The legacy cloud blocks (`retry_join_ec2`, `retry_join_gce` and their `-retry-join-ec2-*`,
//! `-retry-join-gce-*` flags), kept as written and translated into provider strings appended to
//! `retry_join`, as Consul 0.9.1+ does.

use super::ConfigError;

/// The legacy `-retry-join-ec2-*` and `-retry-join-gce-*` settings of one layer (or of the
/// merged layers), kept for the translation into a provider string. `None` means "not set here".
/// Its `Debug` hides the credentials (`redact.rs`).
#[derive(Default, Clone, PartialEq, Eq)]
pub struct LegacyCloud {
    pub ec2_region: Option<String>,
    pub ec2_tag_key: Option<String>,
    pub ec2_tag_value: Option<String>,
    pub ec2_access_key_id: Option<String>,
    pub ec2_secret_access_key: Option<String>,
    pub gce_project_name: Option<String>,
    pub gce_zone_pattern: Option<String>,
    pub gce_tag_value: Option<String>,
    pub gce_credentials_file: Option<String>,
}

impl LegacyCloud {
    /// Applies `later` on top of `self`, key by key: a later layer's value wins.
    pub fn merge(&mut self, later: LegacyCloud) {
        macro_rules! take {
            ($($f:ident),*) => { $( if later.$f.is_some() { self.$f = later.$f; } )* };
        }
        take!(
            ec2_region,
            ec2_tag_key,
            ec2_tag_value,
            ec2_access_key_id,
            ec2_secret_access_key,
            gce_project_name,
            gce_zone_pattern,
            gce_tag_value,
            gce_credentials_file
        );
    }
}

impl LegacyCloud {
    /// Consul 0.9.1+ turns the legacy blocks into go-discover strings appended to retry_join
    /// (docs/reference/consul.md): EC2 needs tag_key and tag_value, GCE needs tag_value. The
    /// warning shows the string to put in retry_join instead, with secrets replaced by `hidden`.
    pub(super) fn provider_strings(
        &self,
        warnings: &mut Vec<String>,
        errors: &mut Vec<ConfigError>,
    ) -> Vec<String> {
        let ec2 = LegacyBlock {
            block: "retry_join_ec2",
            provider: "aws",
            required:
                "both tag_key and tag_value (-retry-join-ec2-tag-key and -retry-join-ec2-tag-value)",
            fields: vec![
                ("access_key_id", &self.ec2_access_key_id, true),
                ("region", &self.ec2_region, false),
                ("secret_access_key", &self.ec2_secret_access_key, true),
                ("tag_key", &self.ec2_tag_key, false),
                ("tag_value", &self.ec2_tag_value, false),
            ],
            complete: self.ec2_tag_key.is_some() && self.ec2_tag_value.is_some(),
        };
        let gce = LegacyBlock {
            block: "retry_join_gce",
            provider: "gce",
            required: "tag_value (-retry-join-gce-tag-value)",
            fields: vec![
                ("credentials_file", &self.gce_credentials_file, true),
                ("project_name", &self.gce_project_name, false),
                ("tag_value", &self.gce_tag_value, false),
                ("zone_pattern", &self.gce_zone_pattern, false),
            ],
            complete: self.gce_tag_value.is_some(),
        };
        [ec2, gce]
            .iter()
            .filter_map(|b| b.translate(warnings, errors))
            .collect()
    }
}

/// One legacy cloud block and how it maps onto a provider string.
struct LegacyBlock<'a> {
    block: &'static str,
    provider: &'static str,
    /// What must be set, for the error when it is not.
    required: &'static str,
    /// (provider key, value, secret?) in go-discover's canonical (sorted) order.
    fields: Vec<(&'static str, &'a Option<String>, bool)>,
    complete: bool,
}

impl LegacyBlock<'_> {
    fn translate(
        &self,
        warnings: &mut Vec<String>,
        errors: &mut Vec<ConfigError>,
    ) -> Option<String> {
        if self.fields.iter().all(|(_, v, _)| v.is_none()) {
            return None;
        }
        if !self.complete {
            errors.push(ConfigError::new(format!(
                "{} needs {}",
                self.block, self.required
            )));
            return None;
        }
        // go-discover's grammar: values with spaces, quotes, backslashes or '=' are quoted.
        let quote = |v: &str| {
            if v.chars()
                .any(|c| c.is_whitespace() || matches!(c, '"' | '\\' | '='))
            {
                format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
            } else {
                v.to_string()
            }
        };
        let mut real = vec![format!("provider={}", self.provider)];
        let mut shown = real.clone();
        for (k, v, secret) in &self.fields {
            if let Some(v) = v {
                real.push(format!("{k}={}", quote(v)));
                let visible = if *secret {
                    "hidden".to_string()
                } else {
                    quote(v)
                };
                shown.push(format!("{k}={visible}"));
            }
        }
        warnings.push(format!(
            "{} is deprecated: use -retry-join \"{}\" instead",
            self.block,
            shown.join(" ")
        ));
        Some(real.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_ec2_flags_become_a_provider_string_and_hide_secrets() {
        let legacy = LegacyCloud {
            ec2_tag_key: Some("role".into()),
            ec2_tag_value: Some("consul server".into()),
            ec2_secret_access_key: Some("SECRETSECRET".into()),
            ..Default::default()
        };
        let (mut warnings, mut errors) = (Vec::new(), Vec::new());
        let out = legacy.provider_strings(&mut warnings, &mut errors);
        assert!(errors.is_empty());
        assert_eq!(out, vec!["provider=aws secret_access_key=SECRETSECRET tag_key=role tag_value=\"consul server\"".to_string()]);
        let w = warnings.join("\n");
        assert!(
            w.contains("secret_access_key=hidden") && !w.contains("SECRETSECRET"),
            "{w}"
        );
    }
}
