//! The NAT lab: reproduces the real failure of long synchronous calls behind a NAT.
//!
//! Three network namespaces — client (198.51.100.2), router, server (203.0.113.2) — with
//! the router masquerading (nftables) and a conntrack established-flow timeout of 3 s.
//! Packets of flows it no longer tracks are invalid (`nf_conntrack_tcp_loose = 0`) and
//! dropped, as a NAT gateway does after 350 s. A local Lambda endpoint in the server
//! namespace answers after 9 s (three times the timeout), with no byte on the wire
//! meanwhile.
//!
//! - With TCP keep-alive (first probe after 1 s, below the 3 s timeout) the flow stays
//!   tracked and the call succeeds.
//! - With keep-alive off, the flow is forgotten, the answer is dropped, and the call fails
//!   at its attempt timeout.
//!
//! The namespaces use documentation address ranges only, and are torn down at the end,
//! even on failure. It needs root, `ip` (iproute2) and `nft` (nftables); `.ci/run`
//! installs them. Where it cannot run, the test is reported as ignored, with the reason,
//! never as passed.
//!
//! The test binary re-runs itself inside the namespaces (`ip netns exec NS <self> --role
//! ...`) for the server and client sides.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};

const CONNTRACK_TIMEOUT_S: u64 = 3;
const FUNCTION_DELAY: Duration = Duration::from_secs(3 * CONNTRACK_TIMEOUT_S);
const SERVER_IP: &str = "203.0.113.2";

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if let Some(i) = argv.iter().position(|a| a == "--role") {
        let code = match argv.get(i + 1).map(String::as_str) {
            Some("server") => role_server(),
            Some("client") => role_client(&argv[i + 2..]),
            _ => 2,
        };
        std::process::exit(code);
    }
    let args = Arguments::from_args();
    let trial = match lab_unavailable() {
        Some(reason) => {
            eprintln!("\n*** NAT lab SKIPPED: {reason} ***\n");
            // Ignored, and a failure if run anyway (`--include-ignored`).
            Trial::test("nat_lab_keepalive_survives_conntrack_expiry", move || {
                Err(format!("not run: {reason}").into())
            })
            .with_ignored_flag(true)
        }
        None => Trial::test("nat_lab_keepalive_survives_conntrack_expiry", run_lab),
    };
    libtest_mimic::run(&args, vec![trial]).exit();
}

fn ok(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn lab_unavailable() -> Option<String> {
    if !ok(Command::new("id").args(["-u"])) {
        return Some("`id` is missing".into());
    }
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not running as root".into());
    }
    for tool in ["ip", "nft"] {
        if !ok(Command::new(tool).arg("-V")) && !ok(Command::new(tool).arg("--version")) {
            return Some(format!(
                "`{tool}` is not installed (apt-get install iproute2 nftables)"
            ));
        }
    }
    let probe = format!("nlprobe{}", std::process::id());
    if !ok(Command::new("ip").args(["netns", "add", &probe])) {
        return Some("cannot create network namespaces here".into());
    }
    let _ = ok(Command::new("ip").args(["netns", "del", &probe]));
    None
}

/// The namespaces and links; dropped (torn down) even when the test fails.
struct Lab {
    tag: String,
}

impl Lab {
    fn ns(&self, role: char) -> String {
        format!("{}{role}", self.tag)
    }

    fn sh(&self, args: &[&str]) -> Result<(), Failed> {
        let out = Command::new(args[0])
            .args(&args[1..])
            .output()
            .map_err(|e| format!("{args:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{args:?}: {}", String::from_utf8_lossy(&out.stderr)).into())
        }
    }

    fn up() -> Result<Lab, Failed> {
        let lab = Lab {
            tag: format!("nl{}", std::process::id()),
        };
        let (c, r, s) = (lab.ns('c'), lab.ns('r'), lab.ns('s'));
        let (c0, r0, r1, s0) = (
            format!("{}c0", lab.tag),
            format!("{}r0", lab.tag),
            format!("{}r1", lab.tag),
            format!("{}s0", lab.tag),
        );
        for ns in [&c, &r, &s] {
            lab.sh(&["ip", "netns", "add", ns])?;
            lab.sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        lab.sh(&[
            "ip", "link", "add", &c0, "type", "veth", "peer", "name", &r0,
        ])?;
        lab.sh(&[
            "ip", "link", "add", &s0, "type", "veth", "peer", "name", &r1,
        ])?;
        for (dev, ns, addr) in [
            (&c0, &c, "198.51.100.2/24"),
            (&r0, &r, "198.51.100.1/24"),
            (&r1, &r, "203.0.113.1/24"),
            (&s0, &s, "203.0.113.2/24"),
        ] {
            lab.sh(&["ip", "link", "set", dev, "netns", ns])?;
            lab.sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev])?;
            lab.sh(&["ip", "-n", ns, "link", "set", dev, "up"])?;
        }
        lab.sh(&[
            "ip",
            "-n",
            &c,
            "route",
            "add",
            "default",
            "via",
            "198.51.100.1",
        ])?;
        lab.sh(&[
            "ip",
            "netns",
            "exec",
            &r,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])?;
        let ruleset = format!(
            "table ip nat {{\n chain nat_out {{\n  type nat hook postrouting priority 100;\n  oifname \"{r1}\" masquerade\n }}\n}}\n\
             table ip filter {{\n chain forward_filter {{\n  type filter hook forward priority 0; policy drop;\n  ct state invalid drop\n  ct state established,related accept\n  iifname \"{r0}\" oifname \"{r1}\" ct state new accept\n }}\n}}\n"
        );
        let mut nft = Command::new("ip")
            .args(["netns", "exec", &r, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        nft.stdin
            .take()
            .ok_or("nft stdin")?
            .write_all(ruleset.as_bytes())?;
        let out = nft.wait_with_output()?;
        if !out.status.success() {
            return Err(format!("nft: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        lab.sh(&[
            "ip",
            "netns",
            "exec",
            &r,
            "sysctl",
            "-qw",
            &format!("net.netfilter.nf_conntrack_tcp_timeout_established={CONNTRACK_TIMEOUT_S}"),
            "net.netfilter.nf_conntrack_tcp_loose=0",
        ])?;
        Ok(lab)
    }

    fn exec_self(&self, role: char, args: &[&str]) -> Command {
        let exe = std::env::current_exe().expect("test binary path");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(role)])
            .arg(exe)
            .args(args);
        cmd
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth ends, and the peers with them.
        for role in ['c', 'r', 's'] {
            let _ = ok(Command::new("ip").args(["netns", "del", &self.ns(role)]));
        }
    }
}

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_lab() -> Result<(), Failed> {
    let lab = Lab::up()?;
    let mut server = lab
        .exec_self('s', &["--role", "server"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = server.stdout.take().ok_or("server stdout")?;
    let server = Server(server);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .ok_or_else(|| format!("server said {line:?}"))?;
    let url = format!("http://{SERVER_IP}:{port}");

    let with = lab
        .exec_self('c', &["--role", "client", &url, "keepalive"])
        .output()?;
    let with_out = String::from_utf8_lossy(&with.stdout);
    let without = lab
        .exec_self('c', &["--role", "client", &url, "off"])
        .output()?;
    let without_out = String::from_utf8_lossy(&without.stdout);
    drop(server);
    eprintln!("with keep-alive: {with_out}\nwithout keep-alive: {without_out}");
    if !with.status.success() {
        return Err(format!(
            "with keep-alive the call failed: {with_out} {}",
            String::from_utf8_lossy(&with.stderr)
        )
        .into());
    }
    if without.status.success() {
        return Err(format!("without keep-alive the call succeeded, so the lab does not reproduce the NAT failure: {without_out}").into());
    }
    if !without_out.contains("TimeoutError") {
        return Err(
            format!("without keep-alive: expected an attempt timeout, got {without_out}").into(),
        );
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// In the server namespace: a local endpoint whose `slow` function answers after
/// `FUNCTION_DELAY`; prints its port, serves until killed.
fn role_server() -> i32 {
    use invoke_stack::testing::{LocalFunction, LocalLambda};
    runtime().block_on(async {
        let addr = format!("{SERVER_IP}:0").parse().expect("address");
        let lambda = LocalLambda::builder()
            .bind(addr)
            .function(
                "slow",
                LocalFunction::new(|inv| async move {
                    tokio::time::sleep(FUNCTION_DELAY).await;
                    Ok(inv.payload().clone())
                }),
            )
            .start()
            .await
            .expect("start the endpoint");
        println!("PORT {}", lambda.addr().port());
        let _ = std::io::stdout().flush();
        std::future::pending::<()>().await;
        0
    })
}

/// In the client namespace: one synchronous call through the NAT, keep-alive on or off.
fn role_client(args: &[String]) -> i32 {
    use invoke_stack::client::{FunctionSettings, TimeoutConfig};
    use invoke_stack::layers::sigv4::Credentials;
    use invoke_stack::testing::{TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY};
    use invoke_stack::transport::{KeepAlive, TransportConfig};
    use invoke_stack::InvokeClient;

    let (Some(url), Some(mode)) = (args.first(), args.get(1)) else {
        return 2;
    };
    let keepalive = (mode == "keepalive").then_some(KeepAlive {
        idle: Duration::from_secs(1),
        interval: Duration::from_secs(1),
        retries: 3,
    });
    runtime().block_on(async {
        let client = InvokeClient::builder()
            .endpoint_url(url)
            .credentials(Credentials::from_keys(
                TEST_ACCESS_KEY_ID,
                TEST_SECRET_ACCESS_KEY,
                None,
            ))
            .transport(
                TransportConfig::default()
                    .keepalive(keepalive)
                    .allow_insecure_http(true),
            )
            .function(
                "slow",
                FunctionSettings::default().max_duration(FUNCTION_DELAY),
            )
            .timeouts(TimeoutConfig {
                sync_margin: Duration::from_secs(5),
                ..TimeoutConfig::default()
            })
            .build()
            .expect("client");
        match client
            .invoke_json("slow", &serde_json::json!({"x": 1}))
            .await
        {
            Ok(resp) => {
                println!("OK {}", String::from_utf8_lossy(resp.payload()));
                0
            }
            Err(e) => {
                println!("ERR {} {e}", e.type_name());
                1
            }
        }
    })
}
