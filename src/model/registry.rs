//! The one place sequential backbones are registered.
//!
//! A backbone is one file: a config type and a type implementing [`SeqModel`], which declares
//! what the shared code must know about it ([`Traits`]: causal or not, how modality embeddings
//! enter, whether it needs them) instead of the shared code special-casing it. One line in
//! [`register!`]'s invocation below then gives it its model name (`ModelKind`, the `kind` of
//! `[model]` in run files and grids), its settings (`ModelSpec`) and its place in [`Backbone`].

use super::fusion::ModalityMode;
use super::layers::Ctx;
use super::SeqBatch;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// How a backbone takes the modality embeddings of its input items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inputs {
    /// `Σ_m P_m E_m[i]` ([B, T, D]), e.g. added to the item embeddings.
    Summed,
    /// Each modality `P_m E_m[i]` as its own stream ([B, T, D] per modality).
    Streams,
    /// Each modality's table rows `E_m[i]` as their own stream, without a projection (the
    /// tables' width must be the model's): the released KDSR network gates over them.
    Tables,
}

/// Whether a backbone runs with modality embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModalityUse {
    /// An ID model that can take modality embeddings (`[modality]` in the run file).
    Optional,
    /// An ID model that takes none.
    Never,
    /// Needs them; a run file's default `[modality]` uses this mode.
    Required(ModalityMode),
    /// Needs them frozen (the two-stage baselines).
    Frozen,
    /// Reads only the items' autoencoder codes ([`Dims::clusters`]), not modality tables: a run
    /// file needs `[modality]` (which features, which autoencoder) with `mode = "frozen"`.
    Codes,
    /// Reads only the items' attribute ids ([`Dims::attribute_labels`]) as categorical
    /// features, not modality tables: a run file needs `[modality]` with the attributes
    /// modality and `mode = "frozen"`.
    Attributes,
}

impl ModalityUse {
    /// The mode of the modality settings a new run of the model gets (None: no modality).
    pub fn default_mode(self) -> Option<ModalityMode> {
        match self {
            Self::Optional | Self::Never => None,
            Self::Required(m) => Some(m),
            Self::Frozen | Self::Codes | Self::Attributes => Some(ModalityMode::Frozen),
        }
    }
}

/// What the shared training and evaluation code must know about a backbone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traits {
    /// Each cell's state depends only on the cells of its own sequence up to itself, so
    /// sequence-mode and packed training and one pass per user in evaluation are exact.
    /// Non-causal backbones train on prefix samples in padded rows and evaluate one window per
    /// instance.
    pub causal: bool,
    pub inputs: Inputs,
    pub modality: ModalityUse,
    /// Needs the items' multi-hot attribute labels ([`Dims::attribute_labels`], from the
    /// attributes modality): for its auxiliary loss, or as categorical features.
    pub attribute_labels: bool,
    /// Needs each modality's autoencoder codes clustered by k-means ([`Dims::clusters`]).
    pub clusters: Option<Clustering>,
    /// Scores items against embeddings it computes from every item's modality streams
    /// ([`SeqModel::candidates`]) instead of an ID table.
    pub item_tower: bool,
    /// Reads the mask token at the masked cells of a cloze batch ([`SeqBatch::masked`]) and
    /// returns a state at every cell, so it can train on masked items
    /// (`train.sample_mode = "cloze"`).
    pub cloze: bool,
    /// Computes each row of a padded prefix batch at the width its own length needs, so the
    /// training step runs the batch whole instead of in groups of rows
    /// (`crate::train::step::by_width`).
    pub own_row_groups: bool,
}

/// The k-means clustering of each modality's autoencoder codes that a backbone asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clustering {
    /// Clusters per modality.
    pub clusters: usize,
    /// Nearest clusters each item links to.
    pub link_k: usize,
    pub seed: u64,
}

/// One modality's clusters ([`Traits::clusters`]).
#[derive(Debug, Clone)]
pub struct ModalityClusters {
    pub name: String,
    pub dim: usize,
    /// [clusters * dim], row-major.
    pub centroids: Vec<f32>,
    /// `[(n_items + 1) * link_k]`: each item's nearest clusters, nearest first (row 0 = padding).
    pub links: Vec<u32>,
}

impl Traits {
    /// A bidirectional backbone over each modality as its own stream (prefix samples).
    pub const fn bidirectional_streams(modality: ModalityUse) -> Self {
        Self {
            causal: false,
            inputs: Inputs::Streams,
            modality,
            attribute_labels: false,
            clusters: None,
            item_tower: false,
            cloze: false,
            own_row_groups: false,
        }
    }

    /// A causal ID backbone that can take summed modality embeddings.
    pub const CAUSAL_ID: Self = Self {
        causal: true,
        inputs: Inputs::Summed,
        modality: ModalityUse::Optional,
        attribute_labels: false,
        clusters: None,
        item_tower: false,
        cloze: false,
        own_row_groups: false,
    };
}

/// Modality inputs of a batch, as [`Traits::inputs`] asks for them.
#[derive(Debug, Clone, Default)]
pub struct Side {
    /// [B, T, D] (`Inputs::Summed`, when the run has modality embeddings).
    pub summed: Option<Tensor>,
    /// Per modality [B, T, D] (`Inputs::Streams` or `Inputs::Tables`), in the run's modality
    /// order.
    pub streams: Vec<Tensor>,
}

/// Sizes a backbone is built for.
#[derive(Debug, Clone)]
pub struct Dims {
    /// Real items (ids 1..=n_items; 0 = padding).
    pub n_items: usize,
    /// Longest history fed to the model.
    pub max_len: usize,
    /// Number of modality streams (`Inputs::Streams` or `Inputs::Tables`).
    pub streams: usize,
    /// Multi-hot attribute labels of every item `[n_items + 1, A]` (row 0 = padding), for
    /// backbones with an attribute-prediction loss ([`Traits::attribute_labels`]).
    pub attribute_labels: Option<Tensor>,
    /// Per modality: k-means clusters of the teacher's autoencoder codes, for backbones that
    /// ask for them ([`Traits::clusters`]).
    pub clusters: Vec<ModalityClusters>,
}

impl Dims {
    /// Sizes of an ID-only model.
    pub fn ids(n_items: usize, max_len: usize) -> Self {
        Self { n_items, max_len, streams: 0, attribute_labels: None, clusters: Vec::new() }
    }
}

/// A sequential backbone: `[B, T]` items (+ modality inputs) -> causal or bidirectional
/// hidden states `[B, T, D]`, scored against [`SeqModel::item_table`] by dot products.
pub trait SeqModel: Sized {
    type Config: Clone + std::fmt::Debug + Default + PartialEq + Serialize + DeserializeOwned;
    /// What the shared code must know (may depend on the settings).
    fn traits(cfg: &Self::Config) -> Traits;
    /// Settings that cannot work, as a message naming the key (`model.<key>`).
    fn check(_cfg: &Self::Config) -> std::result::Result<(), String> {
        Ok(())
    }
    /// The model's name in tables when these settings make it a variant of its own (e.g. MMSR
    /// with per-item modality nodes); None: the registered name.
    fn variant(_cfg: &Self::Config) -> Option<&'static str> {
        None
    }
    /// The width of the item embeddings (the paper preset sets it to 128).
    fn width_mut(cfg: &mut Self::Config) -> &mut usize;
    fn width(cfg: &Self::Config) -> usize {
        *Self::width_mut(&mut cfg.clone())
    }
    fn new(cfg: &Self::Config, dims: &Dims, vb: VarBuilder) -> Result<Self>;
    /// [B, T] -> [B, T, D]
    fn forward(&self, input: &SeqBatch, side: &Side, ctx: &mut Ctx) -> Result<Tensor>;
    /// The states at the flat cells `cells` (`row * T + column`) only, `[M, D]`: those of
    /// [`SeqModel::forward`] up to float rounding. Evaluation reads one or two cells per
    /// sequence, so a backbone may compute its top layer for them alone. Default: `forward`,
    /// then the selection.
    fn forward_at(&self, input: &SeqBatch, side: &Side, cells: &[u32], ctx: &mut Ctx) -> Result<Tensor> {
        super::select_cells(&self.forward(input, side, ctx)?, cells)
    }
    /// The ID table `[n_items + 1, D]` (row 0 = padding) that scores items by dot products;
    /// None for an ID-free model, which overrides [`SeqModel::candidates`].
    fn item_table(&self) -> Option<&Tensor>;
    /// Candidate embeddings for ids 1..=N, `[N, D]`, scored against the hidden states by dot
    /// products. `all` holds every item's modality streams (M × `[N, D]`) when
    /// [`Traits::item_tower`] is set, else nothing; `ctx` is the training step's (dropout) or
    /// evaluation's. Default: the ID table's rows 1..=N.
    fn candidates(&self, _all: &[Tensor], _ctx: &mut Ctx) -> Result<Tensor> {
        let Some(table) = self.item_table() else {
            candle_core::bail!("a model without an item table must compute its candidates")
        };
        table.narrow(0, 1, table.dim(0)? - 1)
    }
    /// An auxiliary training loss on the hidden states `h` [M, D] of the target cells, whose
    /// targets are `targets` [M] (item ids, 1-based); added to the cross-entropy.
    fn aux_loss(&self, _h: &Tensor, _targets: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }
    /// Initial values computed from the data (e.g. cluster centroids) for some of the
    /// parameters created in [`SeqModel::new`], by parameter name; the caller writes them into
    /// its parameter store.
    fn data_init(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
}

macro_rules! register {
    ($($(#[doc = $doc:literal])* $variant:ident($model:ty) = $name:literal,)*) => {
        /// The models the harness can train.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
        #[serde(rename_all = "kebab-case")]
        #[value(rename_all = "kebab-case")]
        pub enum ModelKind {
            /// Most popular items in the training data (no training).
            Pop,
            $($(#[doc = $doc])* $variant,)*
        }

        impl ModelKind {
            /// Every model, popularity first, in registration order.
            pub const ALL: &'static [ModelKind] = &[ModelKind::Pop, $(ModelKind::$variant,)*];

            pub fn name(self) -> &'static str {
                match self {
                    Self::Pop => "pop",
                    $(Self::$variant => $name,)*
                }
            }
        }

        /// The model and its hyper-parameters; only the chosen model's settings are part of a
        /// run.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "kind", rename_all = "kebab-case")]
        pub enum ModelSpec {
            Pop,
            $($variant(<$model as SeqModel>::Config),)*
        }

        impl ModelSpec {
            pub fn default_for(kind: ModelKind) -> Self {
                match kind {
                    ModelKind::Pop => Self::Pop,
                    $(ModelKind::$variant => Self::$variant(Default::default()),)*
                }
            }

            pub fn kind(&self) -> ModelKind {
                match self {
                    Self::Pop => ModelKind::Pop,
                    $(Self::$variant(_) => ModelKind::$variant,)*
                }
            }

            /// None for popularity.
            pub fn traits(&self) -> Option<Traits> {
                match self {
                    Self::Pop => None,
                    $(Self::$variant(c) => Some(<$model>::traits(c)),)*
                }
            }

            /// The model's name in tables: [`SeqModel::variant`], else the registered name.
            pub fn variant(&self) -> &'static str {
                match self {
                    Self::Pop => "pop",
                    $(Self::$variant(c) => <$model>::variant(c).unwrap_or($name),)*
                }
            }

            /// Settings that cannot work, as a message naming the key: first the range rules
            /// every backbone's keys get by name ([`super::limits`]), then the model's own
            /// [`SeqModel::check`].
            pub fn check(&self) -> std::result::Result<(), String> {
                let table = toml::Table::try_from(self).map_err(|e| format!("model: {e}"))?;
                super::limits::check_table("model", &table)?;
                match self {
                    Self::Pop => Ok(()),
                    $(Self::$variant(c) => <$model>::check(c),)*
                }
            }

            /// Embedding width (None for popularity).
            pub fn width(&self) -> Option<usize> {
                match self {
                    Self::Pop => None,
                    $(Self::$variant(c) => Some(<$model>::width(c)),)*
                }
            }

            pub fn set_width(&mut self, d: usize) {
                match self {
                    Self::Pop => {}
                    $(Self::$variant(c) => *<$model>::width_mut(c) = d,)*
                }
            }
        }

        #[derive(Debug, Clone)]
        enum Net {
            $($variant($model),)*
        }

        /// A trainable sequential backbone and its traits.
        #[derive(Debug, Clone)]
        pub struct Backbone {
            pub traits: Traits,
            net: Net,
        }

        impl Backbone {
            /// None for popularity.
            pub fn new(spec: &ModelSpec, dims: &Dims, vb: VarBuilder) -> Result<Option<Self>> {
                let Some(traits) = spec.traits() else { return Ok(None) };
                let net = match spec {
                    ModelSpec::Pop => return Ok(None),
                    $(ModelSpec::$variant(c) => Net::$variant(<$model>::new(c, dims, vb)?),)*
                };
                Ok(Some(Self { traits, net }))
            }

            /// [B, T] -> [B, T, D]
            pub fn forward(&self, input: &SeqBatch, side: &Side, ctx: &mut Ctx) -> Result<Tensor> {
                match &self.net {
                    $(Net::$variant(m) => m.forward(input, side, ctx),)*
                }
            }

            /// See [`SeqModel::forward_at`].
            pub fn forward_at(&self, input: &SeqBatch, side: &Side, cells: &[u32], ctx: &mut Ctx) -> Result<Tensor> {
                match &self.net {
                    $(Net::$variant(m) => m.forward_at(input, side, cells, ctx),)*
                }
            }

            /// The ID table `[n_items + 1, D]`, if the model has one.
            pub fn item_table(&self) -> Option<&Tensor> {
                match &self.net {
                    $(Net::$variant(m) => m.item_table(),)*
                }
            }

            /// Candidate item embeddings for ids 1..=N: [N, D] (see [`SeqModel::candidates`]).
            pub fn candidates(&self, all: &[Tensor], ctx: &mut Ctx) -> Result<Tensor> {
                match &self.net {
                    $(Net::$variant(m) => m.candidates(all, ctx),)*
                }
            }

            /// See [`SeqModel::data_init`].
            pub fn data_init(&self) -> Vec<(String, Tensor)> {
                match &self.net {
                    $(Net::$variant(m) => m.data_init(),)*
                }
            }

            /// See [`SeqModel::aux_loss`].
            pub fn aux_loss(&self, h: &Tensor, targets: &Tensor) -> Result<Option<Tensor>> {
                match &self.net {
                    $(Net::$variant(m) => m.aux_loss(h, targets),)*
                }
            }
        }
    };
}

register! {
    /// SASRec (Kang & McAuley, 2018).
    Sasrec(super::SasRec) = "sasrec",
    /// GRU4Rec (Hidasi et al., 2016).
    Gru4rec(super::Gru4Rec) = "gru4rec",
    /// SASRM: SASRec on ID embeddings fused with frozen modality features (the paper's
    /// "modified SASRec").
    Sasrm(super::sasrm::Sasrm) = "sasrm",
    /// NOVA (Liu et al., 2021): side information in queries and keys only.
    Nova(super::nova::Nova) = "nova",
    /// DIF-SR (Xie et al., 2022): decoupled attention per side-information stream.
    Difsr(super::difsr::DifSr) = "difsr",
    /// SR-GNN (Wu et al., 2019): a gated graph network over each window's session graph.
    Srgnn(super::srgnn::SrGnn) = "srgnn",
    /// MMSR (Hu et al., 2023): typed attention over a heterogeneous item and modality graph.
    Mmsr(super::mmsr::Mmsr) = "mmsr",
    /// The released KDSR network (Hu et al., 2024): an RGAT layer over each window's item graph,
    /// a per-node gate over the ID, RGAT and modality rows, a `last_sum` readout.
    KdsrRgat(super::kdsr_rgat::KdsrRgat) = "kdsr-rgat",
    /// Trans2D (Singer et al., 2022): 2D attention over (position, channel) cells.
    Trans2d(super::trans2d::Trans2d) = "trans2d",
    /// MMSRec (Song et al., 2023): an ID-free two-tower Transformer over frozen modality
    /// features, cosine scores against an item tower.
    Mmsrec(super::mmsrec::Mmsrec) = "mmsrec",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serialised_kinds() {
        for &k in ModelKind::ALL {
            let v = serde_json::to_value(k).unwrap();
            assert_eq!(v.as_str(), Some(k.name()));
            let spec = ModelSpec::default_for(k);
            assert_eq!(spec.kind(), k);
            let t = toml::Table::try_from(&spec).unwrap();
            assert_eq!(t.get("kind").and_then(|v| v.as_str()), Some(k.name()));
        }
    }
}
