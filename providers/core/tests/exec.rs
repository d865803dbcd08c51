//! The exec provider's own error messages: what a failed command says about itself. The shared
//! contract every provider passes stays in `conformance`; these checks are exec's alone.

use muster_provider_core::exec::Exec;
use muster_provider_core::{Provider, ProviderArgs};

#[tokio::test]
async fn exec_errors_name_the_line_and_the_exit() {
    let bad = ProviderArgs::parse("provider=exec command=\"echo not-an-address!\"").unwrap();
    let e = Exec.addrs(&bad).await.unwrap_err().to_string();
    assert!(e.contains("output line 1"), "{e}");
    let fail = ProviderArgs::parse("provider=exec command=\"echo oops >&2; exit 3\"").unwrap();
    let e = Exec.addrs(&fail).await.unwrap_err().to_string();
    assert!(e.contains("exited with status 3; its stderr: oops"), "{e}");
    let quiet = ProviderArgs::parse("provider=exec command=\"exit 4\"").unwrap();
    let e = Exec.addrs(&quiet).await.unwrap_err().to_string();
    assert!(e.contains("status 4 and printed nothing on stderr"), "{e}");
    let slow = ProviderArgs::parse("provider=exec command=\"sleep 5\" timeout=200ms").unwrap();
    assert!(Exec
        .addrs(&slow)
        .await
        .unwrap_err()
        .to_string()
        .contains("did not finish"));
}
