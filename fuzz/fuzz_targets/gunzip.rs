//! Gzip reading: `bundle::pargunzip::ParallelGzReader` on any bytes, or on
//! members ocistep's own writer made from the input and then damaged at a
//! place the input picks (the first input byte chooses). It never panics,
//! and whenever it reads a stream to the end, the bytes are those a plain
//! multi-member decoder (`flate2::read::MultiGzDecoder`) reads; an
//! undamaged stream of its own reads back exactly.

#![no_main]

use std::io::{Read, Write};

use flate2::read::MultiGzDecoder;
use libfuzzer_sys::fuzz_target;
use ocistep::compress::pargunzip::ParallelGzReader;
use ocistep::compress::pargz::ParallelGzWriter;

/// Reads to the end, giving up past 8 MiB.
fn read_all(mut reader: impl Read) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 7919];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Some(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
        if out.len() > 8 << 20 {
            return None;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (gz, original) = if mode & 1 == 0 {
        (rest.to_vec(), None)
    } else {
        // Repeated so that members span more than one block at times.
        let (edit, body) = rest.split_at(rest.len().min(4));
        let body = body.repeat(usize::from(mode >> 1) % 4 * 200 + 1);
        let mut writer = ParallelGzWriter::new(Vec::new(), 1 + u32::from(mode >> 3) % 9, 2)
            .expect("gzip writer");
        writer.write_all(&body).expect("compress");
        let mut gz = writer.finish().expect("finish");
        let mut damaged = false;
        if let [a, b, flip, cut] = *edit {
            let at = usize::from(u16::from_le_bytes([a, b]));
            if flip != 0 && at < gz.len() {
                gz[at] ^= flip;
                damaged = true;
            }
            if cut & 1 == 1 {
                gz.truncate(gz.len().saturating_sub(usize::from(cut >> 1)));
                damaged |= cut >> 1 != 0;
            }
        }
        (gz, (!damaged).then_some(body))
    };
    let ours = read_all(ParallelGzReader::with_threads(&gz[..], 2));
    if let Some(original) = original {
        assert_eq!(ours.as_ref(), Some(&original), "an undamaged stream reads back");
    }
    if let Some(ours) = ours {
        let plain = read_all(MultiGzDecoder::new(&gz[..]));
        assert_eq!(plain.as_ref(), Some(&ours), "read differently than a plain decoder");
    }
});
