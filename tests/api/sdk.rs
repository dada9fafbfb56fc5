//! A real client: the official Syncano Python SDK (`syncano==5.4.6` from PyPI) drives a real
//! Herald through `tests/sdk/test_sdk.py` (connect with the account key, instance, API key,
//! separate-rooms channel, publish, history, `channel.poll`, user login and publishing as a user).
//!
//! Needs `HERALD_TEST_PYTHON`: a Python with `tests/sdk/requirements.txt` installed (`.ci/run`
//! builds one in `target/sdk-venv`). Without it the test reports that it was skipped.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::task::JoinHandle;

use crate::helpers::TestApp;

/// The whole script normally takes a few seconds; this only bounds a hang.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

fn read_all(pipe: Option<impl AsyncRead + Unpin + Send + 'static>) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes).await;
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

#[tokio::test]
async fn the_python_sdk_works_against_herald() {
    let Some(python) = std::env::var_os("HERALD_TEST_PYTHON").filter(|p| !p.is_empty()) else {
        println!(
            "skipped: set HERALD_TEST_PYTHON to a python with tests/sdk/requirements.txt installed"
        );
        return;
    };
    let app = TestApp::spawn_with(|a| {
        // The SDK treats a 204 poll timeout as an error and ends its poll thread (docs/api.md §9.8), so
        // the server keeps the default 300 s, the SDK's own poll read timeout.
        a.poll_timeout = Duration::from_secs(300);
    })
    .await;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/test_sdk.py");
    let no_proxy = match std::env::var("NO_PROXY").or_else(|_| std::env::var("no_proxy")) {
        Ok(list) if !list.is_empty() => format!("{list},127.0.0.1,localhost"),
        _ => "127.0.0.1,localhost".to_owned(),
    };
    let mut command = Command::new(&python);
    command
        .arg(&script)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("HERALD_URL", format!("http://{}", app.addr))
        .env("HERALD_ACCOUNT_KEY", &app.admin_key)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // requests honours proxy variables; the server is on loopback.
        .env("NO_PROXY", &no_proxy)
        .env("no_proxy", &no_proxy)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // The SDK reads defaults (API root, keys, instance) from SYNCANO_* variables at import.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SYNCANO_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", Path::new(&python).display()));
    let stdout = read_all(child.stdout.take());
    let stderr = read_all(child.stderr.take());

    let status = match tokio::time::timeout(SCRIPT_TIMEOUT, child.wait()).await {
        Ok(status) => Some(status.expect("wait for the SDK script")),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    let stdout = stdout.await.expect("stdout reader");
    let stderr = stderr.await.expect("stderr reader");
    let report = format!("--- stdout ---\n{stdout}--- stderr ---\n{stderr}");
    match status {
        None => panic!(
            "the SDK script did not finish within {} s\n{report}",
            SCRIPT_TIMEOUT.as_secs()
        ),
        Some(status) if !status.success() => panic!("the SDK script failed ({status})\n{report}"),
        Some(_) => {}
    }
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.ends_with(" passed, 0 failed"),
        "unexpected summary line {last:?}\n{report}"
    );
    print!("{stdout}");
}
