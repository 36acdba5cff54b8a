//! More hostile bundles, pulled from an OCI layout: symlink chains,
//! duplicate entries, PAX headers that lie or escape, GNU sparse entries and
//! archives that end early. Each one is refused with exit code 6 (unsafe
//! archive) or 11 (corrupt content), never 0; the target keeps exactly what
//! it held and nothing is written beside it.

mod support;

use support::jail::Jail;

use support::tree::{gzip, layout_with_layer};
use support::Run;

const GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// Exit code for an unsafe archive.
const UNSAFE: &[i32] = &[6];
/// Exit code for content that is corrupt or not a bundle.
const BAD: &[i32] = &[11];
/// Either: a malformed header is corrupt content, and also a way to make
/// tools disagree on what an archive holds.
const BAD_OR_UNSAFE: &[i32] = &[6, 11];

/// One hostile layer and what its pull must end with.
struct Case {
    name: &'static str,
    layer: Vec<u8>,
    media_type: &'static str,
    /// The exit codes accepted.
    codes: &'static [i32],
    /// Text the error message must contain.
    needle: &'static str,
}

fn case(name: &'static str, layer: Vec<u8>, codes: &'static [i32], needle: &'static str) -> Case {
    Case {
        name,
        layer: gzip(&layer),
        media_type: GZ,
        codes,
        needle,
    }
}

/// Pulls every case from an OCI layout into a fresh jail. Collects every
/// case that did not end as expected, then fails listing all of them.
fn assert_refused(cases: Vec<Case>) {
    let mut wrong = Vec::new();
    for c in &cases {
        let layouts = tempfile::tempdir().unwrap();
        layout_with_layer(layouts.path(), "bad", &c.layer, c.media_type);
        let jail = Jail::new();
        let out = Run::pull_bundle(&jail.target)
            .image(format!("oci:{}:bad", layouts.path().display()))
            .timeout(std::time::Duration::from_secs(60))
            .output();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let code = out.status.code();
        let mut problems = Vec::new();
        if !code.is_some_and(|code| c.codes.contains(&code)) {
            problems.push(format!("exit {code:?}, want one of {:?}", c.codes));
        }
        if !stderr.contains(c.needle) {
            problems.push(format!("the message lacks {:?}", c.needle));
        }
        if let Err(e) = jail.check_untouched() {
            problems.push(e);
        }
        if !problems.is_empty() {
            wrong.push(format!("{}: {}\n{stderr}", c.name, problems.join("; ")));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} hostile bundles were not refused as expected:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

/// How the headers of [`tar_of`] are written.
#[derive(Clone, Copy)]
enum Format {
    /// POSIX ustar, which PAX extended headers extend.
    Ustar,
    /// GNU, which sparse entries need.
    Gnu,
}

/// A tar archive with raw entries: (name, type flag, link name, content),
/// written into the header bytes directly (so `..`, absolute names and PAX
/// headers come through as an attacker would write them), followed by the
/// end-of-archive blocks.
fn tar_of(format: Format, entries: &[(&str, u8, &str, &[u8])]) -> Vec<u8> {
    let mut out = body(format, entries);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// [`tar_of`] without the end-of-archive blocks.
fn body(format: Format, entries: &[(&str, u8, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, content) in entries {
        let mut h = match format {
            Format::Ustar => tar::Header::new_ustar(),
            Format::Gnu => tar::Header::new_gnu(),
        };
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_mode(if *kind == b'5' { 0o755 } else { 0o644 });
        h.set_size(content.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::new(*kind));
        if let Some(gnu) = h.as_gnu_mut() {
            gnu.set_real_size(content.len() as u64);
            if *kind == b'S' {
                // One block of data at offset 1 MiB: a well-formed sparse file.
                gnu.sparse[0].set_offset(1 << 20);
                gnu.sparse[0].set_length(content.len() as u64);
                gnu.set_real_size((1 << 20) + content.len() as u64);
            }
        }
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(content);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out
}

/// A ustar archive (see [`tar_of`]).
fn ustar(entries: &[(&str, u8, &str, &[u8])]) -> Vec<u8> {
    tar_of(Format::Ustar, entries)
}

/// A PAX extended header entry (type `x`, or `g` for a global one) holding
/// the given `key=value` records.
fn pax(records: &[(&str, &str)]) -> Vec<u8> {
    let mut data = Vec::new();
    for (key, value) in records {
        let body = key.len() + value.len() + 3; // ' ', '=', '\n'
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        data.extend_from_slice(format!("{len} {key}={value}\n").as_bytes());
    }
    data
}

#[test]
fn symlink_chains_are_refused() {
    assert_refused(vec![
        case(
            "a -> b, b -> ../..",
            ustar(&[("a", b'2', "b", b""), ("b", b'2', "../..", b"")]),
            UNSAFE,
            "symlink \"b\" -> \"../..\"",
        ),
        case(
            "a -> b, b -> c, c -> ..",
            ustar(&[
                ("a", b'2', "b", b""),
                ("b", b'2', "c", b""),
                ("c", b'2', "..", b""),
            ]),
            UNSAFE,
            "symlink \"c\" -> \"..\"",
        ),
        case(
            "d/a -> ../b, b -> d, then d/a/x",
            ustar(&[
                ("d", b'5', "", b""),
                ("d/a", b'2', "../b", b""),
                ("b", b'2', "d", b""),
                ("d/a/x", b'0', "", b"x"),
            ]),
            UNSAFE,
            "passes through symlink \"d/a\"",
        ),
        case(
            "l1 -> l2, l2 -> ., then l1/x",
            ustar(&[
                ("l1", b'2', "l2", b""),
                ("l2", b'2', ".", b""),
                ("l1/x", b'0', "", b"x"),
            ]),
            UNSAFE,
            "passes through symlink \"l1\"",
        ),
        case(
            "d/up -> .., d/up2 -> up/.. (.. after a name)",
            ustar(&[
                ("d", b'5', "", b""),
                ("d/up", b'2', "..", b""),
                ("d/up2", b'2', "up/..", b""),
            ]),
            UNSAFE,
            "symlink \"d/up2\"",
        ),
        case(
            "l -> d, hard link h -> l/f",
            ustar(&[
                ("d", b'5', "", b""),
                ("d/f", b'0', "", b"f"),
                ("l", b'2', "d", b""),
                ("h", b'1', "l/f", b""),
            ]),
            UNSAFE,
            "hard link \"h\"",
        ),
    ]);
}

#[test]
fn duplicate_entries_of_another_kind_are_refused() {
    assert_refused(vec![
        case(
            "file then dir",
            ustar(&[("x", b'0', "", b"file"), ("x/", b'5', "", b"")]),
            UNSAFE,
            "\"x\" is a directory",
        ),
        case(
            "dir then file",
            ustar(&[("x/", b'5', "", b""), ("x", b'0', "", b"file")]),
            UNSAFE,
            "\"x\" is a file",
        ),
        case(
            "symlink then file",
            ustar(&[("x", b'2', "y", b""), ("x", b'0', "", b"file")]),
            UNSAFE,
            "\"x\" is a file",
        ),
        case(
            "file then symlink",
            ustar(&[("x", b'0', "", b"file"), ("x", b'2', "y", b"")]),
            UNSAFE,
            "\"x\" is a symlink",
        ),
        case(
            "dir then symlink",
            ustar(&[("x/", b'5', "", b""), ("x", b'2', ".", b"")]),
            UNSAFE,
            "\"x\" is a symlink",
        ),
        case(
            "file then file inside it",
            ustar(&[("x", b'0', "", b"file"), ("x/y", b'0', "", b"inner")]),
            UNSAFE,
            "\"x/y\" is inside \"x\"",
        ),
    ]);
}

#[test]
fn pax_headers_that_escape_are_refused() {
    let path_escape = pax(&[("path", "../../evil")]);
    let path_absolute = pax(&[("path", "/tmp/ocistep-pax-evil")]);
    let link_escape = pax(&[("linkpath", "../../../etc/passwd")]);
    let hard_escape = pax(&[("linkpath", "/etc/passwd")]);
    assert_refused(vec![
        case(
            "pax path=../../evil, ustar name benign",
            ustar(&[
                ("PaxHeaders/benign", b'x', "", &path_escape),
                ("benign", b'0', "", b"x"),
            ]),
            UNSAFE,
            "../../evil",
        ),
        case(
            "pax path absolute, ustar name benign",
            ustar(&[
                ("PaxHeaders/benign", b'x', "", &path_absolute),
                ("benign", b'0', "", b"x"),
            ]),
            UNSAFE,
            "/tmp/ocistep-pax-evil",
        ),
        case(
            "pax linkpath escapes, ustar link benign",
            ustar(&[
                ("PaxHeaders/l", b'x', "", &link_escape),
                ("l", b'2', "ok", b""),
            ]),
            UNSAFE,
            "../../../etc/passwd",
        ),
        case(
            "pax linkpath of a hard link absolute",
            ustar(&[
                ("f", b'0', "", b"f"),
                ("PaxHeaders/h", b'x', "", &hard_escape),
                ("h", b'1', "f", b""),
            ]),
            UNSAFE,
            "/etc/passwd",
        ),
    ]);
    assert!(!std::path::Path::new("/tmp/ocistep-pax-evil").exists());
}

#[test]
fn pax_headers_with_lying_sizes_are_refused() {
    let ten_gib = pax(&[("size", "10737418240")]);
    let over_limit = pax(&[("size", "10737418241")]);
    let huge = pax(&[("size", "18446744073709551615")]);
    assert_refused(vec![
        case(
            "pax size 10 GiB for a 4-byte entry",
            ustar(&[
                ("PaxHeaders/small", b'x', "", &ten_gib),
                ("small", b'0', "", b"tiny"),
            ]),
            BAD,
            "\"small\" is truncated",
        ),
        case(
            "pax size just over the default limit",
            ustar(&[
                ("PaxHeaders/small", b'x', "", &over_limit),
                ("small", b'0', "", b"tiny"),
            ]),
            UNSAFE,
            "--max-extract-size",
        ),
        case(
            "pax size u64::MAX",
            ustar(&[
                ("PaxHeaders/small", b'x', "", &huge),
                ("small", b'0', "", b"tiny"),
            ]),
            BAD,
            "size",
        ),
    ]);
}

/// A PAX record that cannot be read (a size that is no number, a length
/// running past the header) is ignored by lenient readers and refused by
/// strict ones (GNU tar, Go's archive/tar): the same bytes would extract
/// differently depending on the tool, so they are refused.
#[test]
fn malformed_pax_headers_are_refused() {
    let negative = pax(&[("size", "-1")]);
    let junk = pax(&[("size", "12abc")]);
    let mut bad_record = b"99999 path=x\n".to_vec();
    bad_record.resize(64, b'\n');
    assert_refused(vec![
        case(
            "pax size -1",
            ustar(&[
                ("PaxHeaders/negative-size", b'x', "", &negative),
                ("negative-size", b'0', "", b"tiny"),
            ]),
            BAD_OR_UNSAFE,
            "negative-size",
        ),
        case(
            "pax size not a number",
            ustar(&[
                ("PaxHeaders/junk-size", b'x', "", &junk),
                ("junk-size", b'0', "", b"tiny"),
            ]),
            BAD_OR_UNSAFE,
            "junk-size",
        ),
        case(
            "pax record longer than its header",
            ustar(&[
                ("PaxHeaders/bad-record", b'x', "", &bad_record),
                ("bad-record", b'0', "", b"a"),
            ]),
            BAD_OR_UNSAFE,
            "bad-record",
        ),
    ]);
}

#[test]
fn sparse_entries_are_refused() {
    assert_refused(vec![
        case(
            "GNU sparse entry (type S)",
            tar_of(Format::Gnu, &[("sparse", b'S', "", &[0u8; 512])]),
            UNSAFE,
            "sparse",
        ),
        case(
            "GNU sparse entry after a normal file",
            tar_of(
                Format::Gnu,
                &[("ok", b'0', "", b"ok"), ("sparse", b'S', "", b"")],
            ),
            UNSAFE,
            "sparse",
        ),
        case(
            "sparse type S in a non-GNU header",
            ustar(&[("sparse", b'S', "", b"")]),
            BAD,
            "sparse",
        ),
    ]);
}

/// PAX-format sparse files (GNU tar's 0.1 and 1.0 formats) are regular
/// entries whose PAX records say how to rebuild the file; extracted as-is
/// they give a file that is not the one archived, under another name.
#[test]
fn pax_sparse_entries_are_refused() {
    let pax_sparse_1_0 = pax(&[
        ("GNU.sparse.major", "1"),
        ("GNU.sparse.minor", "0"),
        ("GNU.sparse.name", "sparse"),
        ("GNU.sparse.realsize", "1048576"),
    ]);
    let mut map_and_data = b"1\n1044480\n4\n".to_vec();
    map_and_data.resize(512, 0);
    map_and_data.extend_from_slice(b"data");
    let pax_sparse_0_1 = pax(&[
        ("GNU.sparse.size", "1048576"),
        ("GNU.sparse.numblocks", "1"),
        ("GNU.sparse.offset", "1044480"),
        ("GNU.sparse.numbytes", "4"),
        ("GNU.sparse.name", "sparse"),
    ]);
    assert_refused(vec![
        case(
            "PAX sparse 1.0 (GNU.sparse.major=1, type 0)",
            ustar(&[
                ("PaxHeaders/sparse", b'x', "", &pax_sparse_1_0),
                ("GNUSparseFile.0/sparse", b'0', "", &map_and_data),
            ]),
            BAD_OR_UNSAFE,
            "sparse",
        ),
        case(
            "PAX sparse 0.1 (GNU.sparse.numblocks, type 0)",
            ustar(&[
                ("PaxHeaders/sparse", b'x', "", &pax_sparse_0_1),
                ("GNUSparseFile.0/sparse", b'0', "", b"data"),
            ]),
            BAD_OR_UNSAFE,
            "sparse",
        ),
    ]);
}

#[test]
fn archives_that_end_early_are_refused() {
    let big = support::tree::pseudo_random(64 * 1024, 3);
    let whole = ustar(&[("a", b'0', "", b"first"), ("big", b'0', "", &big)]);
    let mid_entry = whole[..512 * 2 + 512 + 10_000].to_vec();
    let mid_header = whole[..512 * 2 + 200].to_vec();
    let gz = gzip(&whole);
    let plain = |name, layer: Vec<u8>, needle| Case {
        name,
        layer,
        media_type: TAR,
        codes: BAD,
        needle,
    };
    let raw_gz = |name, layer: Vec<u8>, needle| Case {
        name,
        layer,
        media_type: GZ,
        codes: BAD,
        needle,
    };
    assert_refused(vec![
        plain(
            "plain tar cut in the middle of an entry",
            mid_entry.clone(),
            "not a valid tar stream",
        ),
        plain(
            "plain tar cut in the middle of a header",
            mid_header.clone(),
            "not a valid tar stream",
        ),
        case(
            "complete gzip of a tar cut in the middle of an entry",
            mid_entry,
            BAD,
            "not a valid tar+gzip stream",
        ),
        case(
            "complete gzip of a tar cut in the middle of a header",
            mid_header,
            BAD,
            "not a valid tar+gzip stream",
        ),
        raw_gz(
            "gzip stream cut in half",
            gz[..gz.len() / 2].to_vec(),
            "not a valid tar+gzip stream",
        ),
        raw_gz(
            "a second gzip member cut short",
            [
                gzip(&body(Format::Ustar, &[("a", b'0', "", b"a")])),
                gzip(&whole)[..40].to_vec(),
            ]
            .concat(),
            "not a valid tar+gzip stream",
        ),
    ]);
}

/// The gzip trailer (CRC-32 and length of the data) is part of the layer:
/// a stream without it, or with one that does not match, is corrupt even
/// when the tar inside ended before it.
#[test]
fn gzip_streams_with_a_missing_or_wrong_trailer_are_refused() {
    let whole = ustar(&[("a", b'0', "", b"first")]);
    let gz = gzip(&whole);
    let mut wrong_crc = gz.clone();
    let crc = wrong_crc.len() - 8;
    wrong_crc[crc] ^= 0xff;
    let mut wrong_length = gz.clone();
    let isize = wrong_length.len() - 4;
    wrong_length[isize] ^= 0xff;
    let raw_gz = |name, layer: Vec<u8>| Case {
        name,
        layer,
        media_type: GZ,
        codes: BAD,
        needle: "not a valid tar+gzip stream",
    };
    assert_refused(vec![
        raw_gz(
            "gzip stream without its trailer",
            gz[..gz.len() - 8].to_vec(),
        ),
        raw_gz(
            "gzip stream with half a trailer",
            gz[..gz.len() - 4].to_vec(),
        ),
        raw_gz("gzip trailer with a wrong CRC-32", wrong_crc),
        raw_gz("gzip trailer with a wrong length", wrong_length),
    ]);
}
