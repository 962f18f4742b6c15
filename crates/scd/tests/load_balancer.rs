//! `scd lb` (load-balancer configuration generation) with the real balancers: the HAProxy
//! configuration for the Redis ports runs in a real HAProxy, which keeps serving every key
//! through the `kill -9` of a node (its health check goes through the node's admin port); the
//! web-tier configurations for HAProxy, nginx and Apache httpd pass each one's own check.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::cluster::{self, call, connect_addr};
use common::{ChildProcess, free_port, scd_binary, tool_available, wait_until};

/// Runs `scd lb ARGS` and returns what it printed; panics unless it succeeded.
fn scd_lb(args: &[&str]) -> String {
    let output = Command::new(scd_binary())
        .arg("lb")
        .args(args)
        .output()
        .expect("run scd lb");
    assert!(
        output.status.success(),
        "scd lb {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 configuration")
}

/// A directory of this test's own, emptied first.
fn scratch_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("scd-lb-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("logs")).expect("create the scratch directory");
    dir
}

/// The path of `program`, also where a non-root `PATH` lacks `/usr/sbin`.
fn sbin(program: &str) -> String {
    let path = format!("/usr/sbin/{program}");
    if Path::new(&path).exists() {
        path
    } else {
        program.to_string()
    }
}

/// Runs a balancer's configuration check; panics with its output unless it passed.
fn check(label: &str, command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("run {label}: {error}"));
    assert!(
        output.status.success(),
        "{label} refused the configuration:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn haproxy_with_the_generated_configuration_keeps_serving_through_a_kill_9() {
    if !tool_available(&sbin("haproxy"), "haproxy") {
        return;
    }
    let _serial = cluster::one_cluster_at_a_time();
    let cluster = cluster::start_settled(2, &[]);
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port(false))
        .parse()
        .expect("address");
    let admin = cluster.nodes[1].admin_addr().to_string();
    let config = scd_lb(&[
        "haproxy",
        "--admin",
        &admin,
        "--service",
        "redis",
        "--bind",
        &listen.to_string(),
    ]);
    for node in &cluster.nodes {
        assert!(
            config.contains(&format!(
                "server {} {} check addr 127.0.0.1 port {}",
                node.name,
                node.client_addr,
                node.admin_addr().port()
            )),
            "{config}"
        );
    }
    let dir = scratch_dir("haproxy");
    let file = dir.join("haproxy.cfg");
    std::fs::write(&file, &config).expect("write the configuration");
    check(
        "haproxy -c",
        Command::new(sbin("haproxy")).arg("-c").arg("-f").arg(&file),
    );
    let mut command = Command::new(sbin("haproxy"));
    command.arg("-f").arg(&file).arg("-db");
    let haproxy = ChildProcess::spawn("haproxy", command).expect("start haproxy");

    let keys: Vec<String> = (0..40).map(|index| format!("lb:{index}")).collect();
    let mut connection = wait_until(Duration::from_secs(10), || connect_addr(listen, 0).ok())
        .expect("HAProxy accepts connections");
    for key in &keys {
        let reply: String = call(&mut connection, &["SET", key, key]);
        assert_eq!(reply, "OK");
    }

    // Each read on a new connection, as a web worker makes them: HAProxy must send it to a
    // node that is up.
    let read_all = |keys: &[String]| -> Result<(), String> {
        for key in keys {
            let mut connection = connect_addr(listen, 0).map_err(|error| error.to_string())?;
            let value: Option<String> = redis::cmd("GET")
                .arg(key)
                .query(&mut connection)
                .map_err(|error| error.to_string())?;
            if value.as_deref() != Some(key.as_str()) {
                return Err(format!("{key} read {value:?}"));
            }
        }
        Ok(())
    };
    read_all(&keys).expect("every key through HAProxy");

    cluster.nodes[0].signal(libc::SIGKILL);
    // HAProxy checks every second and takes a server out after two failures; scd promotes
    // the backups within a second. Then every read succeeds, several rounds in a row.
    let mut last_error = String::new();
    let mut clean_rounds = 0;
    let served = wait_until(Duration::from_secs(15), || {
        match read_all(&keys) {
            Ok(()) => clean_rounds += 1,
            Err(error) => {
                last_error = error;
                clean_rounds = 0;
            }
        }
        (clean_rounds >= 3).then_some(())
    });
    assert!(
        served.is_some(),
        "HAProxy did not serve every key after the kill: {last_error}\n{}",
        haproxy.log()
    );
    assert!(
        haproxy.wait_for_log(
            &format!("{} is DOWN", cluster.nodes[0].name),
            Duration::from_secs(5)
        ),
        "HAProxy's health check did not mark the killed node down:\n{}",
        haproxy.log()
    );
    drop(haproxy);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_web_configurations_pass_haproxy_nginx_and_apache_checks() {
    let tools = [
        (sbin("haproxy"), "haproxy"),
        (sbin("nginx"), "nginx-light"),
        (sbin("apache2"), "apache2"),
    ];
    if !tools
        .iter()
        .all(|(program, package)| tool_available(program, package))
    {
        return;
    }
    let _serial = cluster::one_cluster_at_a_time();
    let cluster = cluster::start_settled(2, &[]);
    let admin = cluster.nodes[0].admin_addr().to_string();
    let dir = scratch_dir("web");
    let bind = || format!("127.0.0.1:{}", free_port(false));
    let web = |balancer: &str, bind: &str| {
        scd_lb(&[
            balancer,
            "--admin",
            &admin,
            "--web-port",
            "8080",
            "--bind",
            bind,
        ])
    };

    let haproxy = web("haproxy", &bind());
    assert!(haproxy.contains("mode http"), "{haproxy}");
    let file = dir.join("haproxy.cfg");
    std::fs::write(&file, &haproxy).expect("write");
    check(
        "haproxy -c",
        Command::new(sbin("haproxy")).arg("-c").arg("-f").arg(&file),
    );

    let nginx = web("nginx", &bind());
    assert_eq!(nginx.matches("max_fails=2").count(), 2, "{nginx}");
    let file = dir.join("nginx.conf");
    std::fs::write(&file, &nginx).expect("write");
    check(
        "nginx -t",
        Command::new(sbin("nginx"))
            .arg("-t")
            .arg("-c")
            .arg(&file)
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("logs/nginx-error.log")),
    );

    // Apache httpd: the generated virtual host, included by a minimal server configuration
    // that loads the modules it names.
    let apache = web("apache", &bind());
    assert_eq!(apache.matches("BalancerMember").count(), 2, "{apache}");
    let vhost = dir.join("scd-web.conf");
    std::fs::write(&vhost, &apache).expect("write");
    let modules = "/usr/lib/apache2/modules";
    let mut server = format!(
        "ServerName localhost\nDefaultRuntimeDir {dir}\nPidFile {dir}/apache.pid\n\
         ErrorLog {dir}/logs/apache-error.log\n",
        dir = dir.display()
    );
    for (module, file) in [
        ("mpm_event", "mpm_event"),
        ("authz_core", "authz_core"),
        ("proxy", "proxy"),
        ("proxy_http", "proxy_http"),
        ("proxy_balancer", "proxy_balancer"),
        ("lbmethod_byrequests", "lbmethod_byrequests"),
        ("slotmem_shm", "slotmem_shm"),
    ] {
        server.push_str(&format!(
            "LoadModule {module}_module {modules}/mod_{file}.so\n"
        ));
    }
    server.push_str(&format!("Include {}\n", vhost.display()));
    let file = dir.join("apache2.conf");
    std::fs::write(&file, server).expect("write");
    check(
        "apache2 -t",
        Command::new(sbin("apache2")).arg("-t").arg("-f").arg(&file),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nginx_is_refused_for_the_redis_protocol_with_a_reason() {
    let output = Command::new(scd_binary())
        .args([
            "lb",
            "nginx",
            "--service",
            "redis",
            "--admin",
            "127.0.0.1:1",
        ])
        .output()
        .expect("run scd lb");
    assert!(!output.status.success());
    // Refused before the admin port is asked (nothing listens on port 1).
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("nginx does not balance the redis protocol here: use haproxy"),
        "{stderr}"
    );
}
