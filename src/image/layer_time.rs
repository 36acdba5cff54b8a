//! Re-timing an image's layers for `--image-timestamp`, as Shipwright's
//! image-processing step does through go-containerregistry's `mutate.Time`:
//! each tar layer is read (verified against its digest), decompressed,
//! given the one time throughout ([`retime_tar`]) and compressed again as
//! it was (gzip, zstd or none) into a spool file, whose digest and diff_id
//! then replace the old ones in the manifest and the config.
//!
//! Layers that are not tar (artifacts, in-toto statements) and layers that
//! may not be redistributed (foreign, non-distributable) are left as they
//! are: go-containerregistry fails on the first and fetches the second from
//! their URLs.

use std::io::{BufWriter, Read, Write};

use crate::archive::pack::encoder::Encoder;
use crate::archive::retime::retime_tar;
use crate::compress::decompress::decoder;
use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::oci::digest::{Digest, HashingWriter};
use crate::oci::manifest::Descriptor;
use crate::store::Store;

/// A re-timed layer, waiting in its spool file to be pushed.
pub struct RetimedLayer {
    /// The layer's new descriptor (media type and annotations kept).
    pub descriptor: Descriptor,
    /// The digest of its uncompressed tar, for the config's `diff_ids`.
    pub diff_id: Digest,
    /// The compressed layer.
    pub file: tempfile::NamedTempFile,
}

/// The compression of a layer that can be re-timed, by its media type;
/// `None` for layers left as they are.
pub fn retimable(media_type: &str) -> Option<Compression> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

/// Reads the layer `desc` from `src` and writes it re-timed to `secs`
/// into a spool file, compressed as `compression` at its default level.
pub async fn retime_layer(
    src: &Store,
    desc: &Descriptor,
    compression: Compression,
    secs: u64,
) -> Result<RetimedLayer> {
    let (file, digest, size, diff_id) = src
        .stream_blob_restarting(desc, |_| {
            let file = tempfile::NamedTempFile::new()
                .map_err(|e| Error::io("creating a spool file in", std::env::temp_dir(), e))?;
            Ok(move |reader: &mut dyn Read| rewrite(reader, file, compression, secs))
        })
        .await
        .map_err(|e| match e {
            Error::BadContent(m) => Error::BadContent(format!("layer {}: {m}", desc.digest)),
            other => other,
        })?;
    Ok(RetimedLayer {
        descriptor: Descriptor {
            digest: digest.to_string(),
            size,
            ..desc.clone()
        },
        diff_id,
        file,
    })
}

/// Decompresses `reader`, re-times its tar and compresses it into `file`;
/// returns the file with the compressed digest and size and the diff_id.
fn rewrite(
    reader: &mut dyn Read,
    file: tempfile::NamedTempFile,
    compression: Compression,
    secs: u64,
) -> Result<(tempfile::NamedTempFile, Digest, u64, Digest)> {
    let path = file.path().to_path_buf();
    let io_error = |e: std::io::Error| Error::io("writing the re-timed layer to", &path, e);
    let out = file.reopen().map_err(io_error)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let compressed = HashingWriter::new(BufWriter::with_capacity(256 * 1024, out));
    let encoder = Encoder::new(
        compressed,
        compression,
        compression.default_level(),
        threads,
    )
    .map_err(io_error)?;
    let mut tar = HashingWriter::new(encoder);
    let (mut input, _) = decoder(reader, compression);
    retime_tar(&mut input, &mut tar, secs)?;
    let (encoder, diff_id, _) = tar.finish();
    let (mut buffered, digest, size) = encoder.finish().map_err(io_error)?.finish();
    buffered.flush().map_err(io_error)?;
    Ok((file, digest, size, diff_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tar_layers_are_retimed() {
        assert_eq!(
            retimable("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(
            retimable("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(Compression::Zstd)
        );
        assert_eq!(
            retimable("application/vnd.oci.image.layer.v1.tar"),
            Some(Compression::None)
        );
        for kept in [
            "application/vnd.in-toto+json",
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
        ] {
            assert_eq!(retimable(kept), None, "{kept}");
        }
    }
}
