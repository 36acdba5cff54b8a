//! The image in DIR, whatever form the build wrote it in, as an OCI layout
//! plus the manifests to push.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::image::archive::{self, Found, Unpacked};
use crate::image::docker;
use crate::oci::manifest::{Descriptor, ANNOTATION_REF_NAME};
use crate::oci::platform::Platform;
use crate::oci::reference::LayoutRef;
use crate::store::layout::Layout;
use crate::store::Store;

/// What to push from the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// One manifest (an image, or an index with its children), pushed as it is.
    Single(Descriptor),
    /// Several images, each with a platform, pushed under one new OCI index.
    Platforms(Vec<(Platform, Descriptor)>),
}

/// The form DIR held the image in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Form {
    /// An OCI image layout.
    Layout,
    /// A tarball of an OCI layout.
    OciArchive(PathBuf),
    /// A `docker save` / kaniko tarball.
    DockerArchive(PathBuf),
}

/// An image ready to be read: a layout, what to push from it, and the
/// temporary directory a tarball was unpacked into (removed on drop).
#[derive(Debug)]
pub struct ImageSource {
    /// The layout holding the content.
    pub layout: Layout,
    /// What to push.
    pub selection: Selection,
    /// What DIR held.
    pub form: Form,
    _scratch: Option<tempfile::TempDir>,
}

impl ImageSource {
    /// Opens the image in `dir`: an OCI layout, or the one OCI or docker
    /// archive in it (unpacked into a temporary directory). Blocking.
    pub fn open(dir: &Path) -> Result<Self> {
        match archive::find(dir)? {
            Found::Layout => {
                let layout = Layout::open(dir)?;
                Ok(ImageSource {
                    selection: select(&layout)?,
                    layout,
                    form: Form::Layout,
                    _scratch: None,
                })
            }
            Found::Tarball(tarball) => Self::open_tarball(&tarball),
        }
    }

    fn open_tarball(tarball: &Path) -> Result<Self> {
        let scratch = tempfile::Builder::new()
            .prefix("ocistep-image-")
            .tempdir()
            .map_err(|e| Error::io("creating a directory in", std::env::temp_dir(), e))?;
        let unpacked = scratch.path().join("archive");
        std::fs::create_dir(&unpacked).map_err(|e| Error::io("creating", &unpacked, e))?;
        let (layout, selection, form) = match archive::unpack(tarball, &unpacked)? {
            Unpacked::Oci(layout) => {
                let selection = select(&layout)?;
                (layout, selection, Form::OciArchive(tarball.to_path_buf()))
            }
            Unpacked::Docker(root) => {
                let layout = Layout::open_or_create(&scratch.path().join("layout"))?;
                let desc = docker::convert(&root, &layout)?;
                (
                    layout,
                    Selection::Single(desc),
                    Form::DockerArchive(tarball.to_path_buf()),
                )
            }
        };
        Ok(ImageSource {
            layout,
            selection,
            form,
            _scratch: Some(scratch),
        })
    }

    /// A store reading from the layout.
    pub fn store(&self) -> Store {
        Store::Layout {
            layout: self.layout.clone(),
            reference: LayoutRef {
                path: self.layout.root().to_path_buf(),
                tag: None,
                digest: None,
            },
        }
    }
}

/// Chooses what to push from a layout's index.json: its one manifest, or
/// all of them when each has a platform.
pub fn select(layout: &Layout) -> Result<Selection> {
    let manifests = layout.manifests()?;
    if manifests.len() <= 1 {
        return layout.single_manifest().map(Selection::Single);
    }
    let platforms: Vec<Option<Platform>> = manifests.iter().map(platform_of).collect();
    if platforms.iter().any(Option::is_none) {
        return Err(Error::Usage(format!(
            "layout {} holds {} images ({}) and not all of them have a platform; \
             push a layout with one image, or give each index.json entry a platform to push them as one index",
            layout.root().display(),
            manifests.len(),
            manifests.iter().map(name).collect::<Vec<_>>().join(", ")
        )));
    }
    let children: Vec<(Platform, Descriptor)> =
        platforms.into_iter().flatten().zip(manifests).collect();
    check_distinct(layout, &children)?;
    Ok(Selection::Platforms(children))
}

/// The platform of an index.json entry, if it has a usable one.
fn platform_of(desc: &Descriptor) -> Option<Platform> {
    let platform: Platform = serde_json::from_value(desc.platform.clone()?).ok()?;
    (!platform.os.is_empty() && !platform.architecture.is_empty()).then_some(platform)
}

/// Refuses two entries for one platform (a client could not choose).
fn check_distinct(layout: &Layout, children: &[(Platform, Descriptor)]) -> Result<()> {
    for (i, (a, da)) in children.iter().enumerate() {
        let normal = a.clone().normalized();
        if let Some((_, db)) = children[i + 1..]
            .iter()
            .find(|(b, _)| b.clone().normalized() == normal)
        {
            return Err(Error::Usage(format!(
                "layout {} holds two images for {} ({} and {}); keep one per platform",
                layout.root().display(),
                normal.short(),
                name(da),
                name(db)
            )));
        }
    }
    Ok(())
}

/// An entry's tag, or its digest when it has none.
fn name(desc: &Descriptor) -> String {
    desc.annotations
        .get(ANNOTATION_REF_NAME)
        .cloned()
        .unwrap_or_else(|| desc.digest.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::digest::Digest;
    use crate::oci::manifest::OCI_MANIFEST;

    fn add(layout: &Layout, tag: &str, platform: Option<&str>) {
        let bytes = format!(r#"{{"schemaVersion":2,"tag":"{tag}"}}"#);
        let digest = Digest::of(bytes.as_bytes());
        layout.put_blob_bytes(&digest, bytes.as_bytes()).unwrap();
        let mut desc = Descriptor::new(OCI_MANIFEST, &digest, bytes.len() as u64);
        desc.platform =
            platform.map(|p| serde_json::to_value(Platform::parse(p).unwrap()).unwrap());
        layout.set_tag(tag, desc).unwrap();
    }

    #[test]
    fn several_images_need_platforms() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        add(&layout, "one", None);
        assert!(matches!(select(&layout).unwrap(), Selection::Single(_)));
        add(&layout, "two", Some("linux/arm64"));
        let e = select(&layout).unwrap_err();
        assert_eq!(e.exit_code(), crate::ExitCode::Usage);
        assert!(e.to_string().contains("one, two"), "{e}");
    }

    #[test]
    fn platforms_make_an_index_unless_duplicated() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open_or_create(dir.path()).unwrap();
        add(&layout, "a", Some("linux/amd64"));
        add(&layout, "b", Some("linux/arm64"));
        match select(&layout).unwrap() {
            Selection::Platforms(children) => assert_eq!(children.len(), 2),
            other => panic!("{other:?}"),
        }
        add(&layout, "c", Some("linux/aarch64"));
        let e = select(&layout).unwrap_err();
        assert!(e.to_string().contains("linux/arm64"), "{e}");
    }
}
