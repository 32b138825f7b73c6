//! Fuzz target: ring buffer bytes into `event::decode`. Any bytes must
//! decode or give a `DecodeError`; what decodes must survive a round trip
//! through `encode` unchanged, so the agent never records a different event
//! than the one it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = agent::event::decode(data) {
        let again =
            agent::event::decode(&agent::event::encode(&ev)).expect("an encoded event decodes");
        assert_eq!(again, ev, "decode(encode(ev)) != ev");
    }
});
