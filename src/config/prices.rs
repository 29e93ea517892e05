//! Prices: what a model's tokens cost, per deployment, from the config and the built-in table.

use super::*;

/// Prices in micro-dollars per million tokens (exact integers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Price {
    pub input: u64,
    pub output: u64,
    pub cached_input: u64,
    pub cache_write: u64,
}

impl From<file::PriceEntry> for Price {
    fn from(p: file::PriceEntry) -> Price {
        let micro = |usd: f64| (usd.max(0.0) * 1_000_000.0).round() as u64;
        Price {
            input: micro(p.input),
            output: micro(p.output),
            cached_input: micro(p.cached_input.unwrap_or(p.input)),
            cache_write: micro(p.cache_write.unwrap_or(p.input)),
        }
    }
}

/// The bundled default prices (`conf/prices.toml`).
const BUNDLED_PRICES: &str = include_str!("../../conf/prices.toml");

/// Prices by upstream model name: the bundled table with the operator's file over it.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    models: HashMap<String, Price>,
}

impl PriceTable {
    pub fn bundled() -> PriceTable {
        let f: file::PricesFile =
            toml::from_str(BUNDLED_PRICES).expect("conf/prices.toml is valid");
        PriceTable {
            models: f.models.into_iter().map(|(k, v)| (k, v.into())).collect(),
        }
    }

    pub(super) fn merge(&mut self, f: file::PricesFile) {
        self.models
            .extend(f.models.into_iter().map(|(k, v)| (k, v.into())));
    }

    /// The price of `model`: its exact name, else the entry it extends with a dated
    /// snapshot suffix (`-2024-08-06`, `-20250929`, `-0613`) or `-latest`; a `vendor/` prefix
    /// is ignored. Anything else (`gpt-5-pro`, `claude-opus-4-5`) is a different model, whose
    /// price is unknown until it is listed.
    pub fn lookup(&self, model: &str) -> Option<Price> {
        let bare = model.rsplit('/').next().unwrap_or(model);
        if let Some(p) = self.models.get(bare) {
            return Some(*p);
        }
        // The snapshot suffix starts at the first `-` followed by 4 digits or by `latest`.
        let b = bare.as_bytes();
        let at = (0..b.len()).find(|&i| {
            b[i] == b'-'
                && (b[i + 1..].starts_with(b"latest")
                    || b.get(i + 1..i + 5)
                        .is_some_and(|d| d.iter().all(u8::is_ascii_digit)))
        })?;
        self.models.get(&bare[..at]).copied()
    }
}

impl Price {
    /// Cost of a typical request (1000 tokens in, 500 out), for ordering by cost.
    pub fn typical_cost(&self) -> u64 {
        self.input * 1000 + self.output * 500
    }
}
