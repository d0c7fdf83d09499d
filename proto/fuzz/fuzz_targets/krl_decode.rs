//! Feeds arbitrary bytes to the KRL decoder. It must never panic, and whatever it accepts
//! must re-encode to a KRL that decodes to the same set, byte-identically on a second pass.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signoff_proto::krl::Krl;

fuzz_target!(|data: &[u8]| {
    if let Ok(krl) = Krl::decode(data) {
        let bytes = krl.encode();
        let again = Krl::decode(&bytes).expect("our own encoding must decode");
        assert_eq!(again, krl);
        assert_eq!(again.encode(), bytes);
    }
});
