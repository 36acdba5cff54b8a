//! `--discover`: the referrers of `--image` (the referrers API where the
//! registry serves it, the tag schema otherwise), as an OCI index on
//! stdout and in `--result-file-referrers`.

use std::io::Write;

use crate::error::{Error, Result};
use crate::modes::Context;
use crate::oci::reference::Target;
use crate::referrers::{discover::discover, referrers_index};
use crate::results::{self, Outcome};
use crate::store::Store;

/// Runs the mode.
pub async fn run(ctx: &Context, target: &Target, artifact_type: Option<&str>) -> Result<()> {
    let store = Store::for_reading(target, &ctx.remote)?;
    let subject = store.get_manifest().await?;
    let found = discover(&store, &subject.digest, artifact_type).await?;
    let message = format!(
        "{} has {} referrers{}",
        store.pinned(&subject.digest),
        found.len(),
        artifact_type
            .map(|t| format!(" of type {t}"))
            .unwrap_or_default()
    );
    let index = String::from_utf8(referrers_index(&found)).expect("JSON is UTF-8");
    writeln!(std::io::stdout().lock(), "{index}").map_err(|e| Error::io("writing", "stdout", e))?;
    results::write(ctx.results.referrers.as_deref(), &index)?;
    ctx.finish(
        "discover",
        &message,
        &Outcome {
            digest: Some(subject.digest.clone()),
            reference: Some(store.pinned(&subject.digest)),
            ..Outcome::default()
        },
        None,
    )
}
