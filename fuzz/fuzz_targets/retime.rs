//! Re-timing a tar stream: `archive::retime::retime_tar` on any bytes. It
//! never panics, and whenever it accepts a stream, its output is whole tar
//! blocks that it accepts in turn and leaves exactly as they are (every
//! time is already the one asked for).

#![no_main]

use libfuzzer_sys::fuzz_target;
use ocistep::archive::retime::retime_tar;

const TIME: u64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    if retime_tar(&mut &data[..], &mut out, TIME).is_err() {
        return;
    }
    assert_eq!(out.len() % 512, 0, "whole blocks");
    let mut again = Vec::new();
    retime_tar(&mut &out[..], &mut again, TIME).expect("its own output is accepted");
    assert!(again == out, "re-timing its own output changes nothing");
});
