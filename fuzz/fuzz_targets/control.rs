//! Fuzz target: control socket request lines (`grants::control::respond`)
//! against a grants store in a scratch directory. Every line must get a
//! response, `ok: false` with a reason when it is refused.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};

use agent::{
    grants::{GrantStore, ManualClock, control},
    policy::grant::Requester,
};
use libfuzzer_sys::fuzz_target;

fn store() -> &'static Mutex<GrantStore> {
    static STORE: OnceLock<Mutex<GrantStore>> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("debugmon-fuzz-control-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let (s, _) = GrantStore::open(
            dir.join("grants.json"),
            std::time::Duration::from_secs(8 * 3600),
            clock,
            Arc::new(ed25519_dalek::SigningKey::from_bytes(&[7; 32])),
        )
        .expect("an empty store opens");
        Mutex::new(s)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let requester = Requester {
        uid: 0,
        pid: None,
        login_uid: None,
        login_user: None,
    };
    let (resp, _event) = control::respond(store(), line, &requester);
    if !resp.ok {
        assert!(
            resp.error.as_deref().is_some_and(|e| !e.is_empty()),
            "a refusal says why"
        );
    }
    // Whatever the answer, it goes back to the client as JSON.
    serde_json::to_vec(&resp).expect("responses serialize");
});
