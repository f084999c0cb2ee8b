//! Range checks every backbone's settings get by their key names, before any model-specific
//! check ([`SeqModel::check`](super::registry::SeqModel::check)).
//!
//! The rules read a model config's serialised TOML table, so a new backbone is covered
//! without new code as long as its keys follow the naming used so far:
//!
//! - an integer is a width, a count or a number of layers or steps and must be at least 1,
//!   unless its key ends in `seed`;
//! - a float must be finite; a key containing `dropout` is a probability in [0, 1); a key
//!   ending in `eps` must be positive; a key ending in `std` must be >= 0.
//!
//! A setting that needs more (a multiple of the head count, a cluster count below the item
//! count) is checked by the model or at setup.

/// The first setting of `table` (a model config, keys under `prefix`, e.g. `model`) that breaks
/// a rule above, as a message naming its dotted key.
pub fn check_table(prefix: &str, table: &toml::Table) -> Result<(), String> {
    for (key, value) in table {
        let path = format!("{prefix}.{key}");
        match value {
            toml::Value::Table(inner) => check_table(&path, inner)?,
            toml::Value::Integer(n) if !key.ends_with("seed") && *n < 1 => {
                return Err(format!("{path} must be at least 1, got {n}"));
            }
            toml::Value::Float(x) => check_float(&path, key, *x)?,
            _ => {}
        }
    }
    Ok(())
}

fn check_float(path: &str, key: &str, x: f64) -> Result<(), String> {
    if !x.is_finite() {
        return Err(format!("{path} must be a finite number, got {x}"));
    }
    if key.contains("dropout") && !(0.0..1.0).contains(&x) {
        return Err(format!("{path} is a dropout probability: it must be in [0, 1), got {x}"));
    }
    if key.ends_with("eps") && x <= 0.0 {
        return Err(format!("{path} must be positive, got {x}"));
    }
    if key.ends_with("std") && x < 0.0 {
        return Err(format!("{path} must be >= 0, got {x}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn rules_by_key_name() {
        assert_eq!(check_table("model", &table("hidden = 8\ncluster_seed = 0\nhidden_dropout = 0.0\n")), Ok(()));
        let e = check_table("model", &table("hidden = 0\n")).unwrap_err();
        assert!(e.starts_with("model.hidden must be at least 1"), "{e}");
        let e = check_table("model", &table("attn_dropout = 1.0\n")).unwrap_err();
        assert!(e.contains("model.attn_dropout") && e.contains("[0, 1)"), "{e}");
        let e = check_table("model", &table("dropout = -0.1\n")).unwrap_err();
        assert!(e.contains("model.dropout"), "{e}");
        let e = check_table("model", &table("layer_norm_eps = 0.0\n")).unwrap_err();
        assert!(e.contains("model.layer_norm_eps"), "{e}");
        let e = check_table("model", &table("init_std = -1.0\n")).unwrap_err();
        assert!(e.contains("model.init_std"), "{e}");
        let e = check_table("model", &table("[inner]\nsteps = 0\n")).unwrap_err();
        assert!(e.contains("model.inner.steps"), "{e}");
        let e = check_table("model", &table("temperature = nan\n")).unwrap_err();
        assert!(e.contains("model.temperature") && e.contains("finite"), "{e}");
    }
}
