//! Feeds arbitrary bytes to `cookie::Verifier::verify` as the Cookie TLV's
//! opaque value, with a clock and destination also taken from the input.
//! It must never panic, and a forged cookie must never be accepted: the
//! fuzzer does not know the key, so any acceptance is a bug.
#![no_main]

use std::net::SocketAddr;

use convert::cookie::{sign, Key, Verifier};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((head, opaque)) = data.split_first_chunk::<10>() else {
        return;
    };
    let now = u64::from_be_bytes(head[..8].try_into().unwrap());
    let port = u16::from_be_bytes([head[8], head[9]]);
    let dest = SocketAddr::from(([192, 0, 2, 1], port));
    let key = Key::new(1, vec![0x42; 32]).unwrap();
    let mut verifier = Verifier::new(vec![key.clone()], 30, 4);

    assert!(
        verifier.verify(opaque, dest, now).is_err(),
        "accepted a cookie the fuzzer forged"
    );
    assert_eq!(verifier.replay_len(), 0, "recorded a refused cookie");

    // A genuine cookie, stamped `now` with a nonce from the input, is
    // accepted once and refused the second time, whatever the clock.
    let mut nonce = [0u8; 16];
    for (slot, byte) in nonce.iter_mut().zip(opaque) {
        *slot = *byte;
    }
    let genuine = sign(&key, dest, now, nonce);
    assert_eq!(verifier.verify(&genuine, dest, now), Ok(1));
    assert!(verifier.verify(&genuine, dest, now).is_err());
});
