//! `scd lb`: asks a node's admin port for `GET /cluster` and prints a load-balancer configuration
//! for the cluster's nodes (HAProxy, nginx or Apache httpd).
//!
//! Two things can sit behind the balancer:
//!
//! - the **web servers**, one beside each scd node (`--service web`, the default): no session
//!   affinity is needed, since every node serves every session. HAProxy checks each web server
//!   through its scd's admin port (`GET /health`), so a web server whose scd is down, fenced or
//!   leaving gets no new requests; nginx and Apache httpd only mark a server down passively,
//!   after failed requests, and start with the nodes that are down or leaving marked so;
//! - **scd itself** (`--service redis` or `memcached`), for clients that reach the cluster
//!   through one address. TCP balancing of these protocols is HAProxy's (nginx would need its
//!   stream module, Apache httpd cannot proxy them).
//!
//! The output is a complete configuration for HAProxy and nginx, and a virtual-host snippet for
//! Apache httpd (whose configurations are assembled from modules). It reflects the cluster when
//! it was generated: regenerate it when nodes join or leave for good.

use std::fmt::Write as _;
use std::net::SocketAddr;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::cli::{Balancer, LbArgs, LbService};
use crate::status::http_get;

pub(crate) fn lb(args: &LbArgs) -> anyhow::Result<()> {
    supported(args)?;
    let body = http_get(&args.admin, "/cluster")?;
    let cluster: Value =
        serde_json::from_str(&body).context("the admin port did not answer JSON")?;
    print!("{}", render(args, &cluster)?);
    Ok(())
}

/// One node as the configuration needs it.
#[derive(Debug)]
struct Backend {
    name: String,
    /// Where the balancer sends traffic.
    address: SocketAddr,
    /// The node's admin port, where its health is checked (`None`: it has none).
    admin: Option<SocketAddr>,
    /// Down or leaving when the configuration was generated.
    out_of_service: bool,
}

/// The configuration for `args` from `cluster` (the JSON of `GET /cluster`).
pub(crate) fn render(args: &LbArgs, cluster: &Value) -> anyhow::Result<String> {
    supported(args)?;
    let backends = backends(args, cluster)?;
    let header = header(args, cluster);
    Ok(match args.balancer {
        Balancer::Haproxy => haproxy(args, &header, &backends),
        Balancer::Nginx => nginx(args, &header, &backends),
        Balancer::Apache => apache(args, &header, &backends),
    })
}

/// Only HAProxy balances the cache protocols.
fn supported(args: &LbArgs) -> anyhow::Result<()> {
    if args.balancer != Balancer::Haproxy && args.service != LbService::Web {
        bail!(
            "{} does not balance the {} protocol here: use haproxy (nginx needs its stream \
             module, Apache httpd has no proxy for it)",
            args.balancer.label(),
            args.service.label()
        );
    }
    Ok(())
}

fn backends(args: &LbArgs, cluster: &Value) -> anyhow::Result<Vec<Backend>> {
    let nodes = cluster["nodes"]
        .as_array()
        .context("the /cluster answer has no node list")?;
    let mut backends = Vec::with_capacity(nodes.len());
    for node in nodes {
        let name = node["name"]
            .as_str()
            .context("a node without a name")?
            .to_string();
        let address_of = |field: &str| -> anyhow::Result<Option<SocketAddr>> {
            match &node[field] {
                Value::Null => Ok(None),
                value => {
                    let text = value.as_str().unwrap_or_default();
                    text.parse()
                        .map(Some)
                        .with_context(|| format!("node '{name}': {field} address '{text}'"))
                }
            }
        };
        let peer = address_of("peer")?.with_context(|| format!("node '{name}' has no address"))?;
        // An admin port bound to every interface is reached on the node's host; port 0 means
        // the node runs without one (`--admin off`).
        let admin = address_of("admin")?
            .filter(|admin| admin.port() != 0)
            .map(|admin| {
                if admin.ip().is_unspecified() {
                    SocketAddr::new(peer.ip(), admin.port())
                } else {
                    admin
                }
            });
        let address = match args.service {
            // The web server runs beside the node: on the host its peers reach it at.
            LbService::Web => SocketAddr::new(peer.ip(), args.web_port),
            LbService::Redis => address_of("client")?
                .with_context(|| format!("node '{name}' has no client port"))?,
            LbService::Memcached => address_of("memcached")?.with_context(|| {
                format!("node '{name}' has no memcached port (started without --memcached)")
            })?,
        };
        let state = node["state"].as_str().unwrap_or("alive");
        backends.push(Backend {
            name: sanitized(&name),
            address,
            admin,
            out_of_service: matches!(state, "down" | "leaving"),
        });
    }
    if backends.is_empty() {
        bail!("the node knows no members");
    }
    backends.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(backends)
}

/// A name every balancer takes as an identifier: node names are printable, and may hold spaces
/// or quotes.
fn sanitized(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn header(args: &LbArgs, cluster: &Value) -> Vec<String> {
    let text = |value: &Value| value.as_str().unwrap_or("?").to_string();
    let mut lines = vec![
        format!(
            "Generated by `scd lb {}` from the view of node '{}' of cluster '{}'.",
            args.balancer.label(),
            text(&cluster["node"]),
            text(&cluster["cluster"])
        ),
        "Regenerate it when nodes join or leave for good.".to_string(),
    ];
    if args.service == LbService::Web {
        lines.push(format!(
            "Web servers: port {} on each scd node's host; no session affinity is needed (every \
             scd node serves every session).",
            args.web_port
        ));
    }
    lines
}

fn comment(out: &mut String, prefix: &str, lines: &[String]) {
    for line in lines {
        let _ = writeln!(out, "{prefix}{line}");
    }
}

fn haproxy(args: &LbArgs, header: &[String], backends: &[Backend]) -> String {
    let mut out = String::new();
    comment(&mut out, "# ", header);
    let _ = writeln!(
        out,
        "# Each server is checked through its scd node's admin port (GET /health): a server whose\n\
         # scd is down, fenced or leaving gets no new traffic."
    );
    let mode = match args.service {
        LbService::Web => "http",
        LbService::Redis | LbService::Memcached => "tcp",
    };
    let name = format!("scd_{}", args.service.label());
    let bind = args
        .bind
        .clone()
        .unwrap_or_else(|| args.service.default_bind());
    let _ = write!(
        out,
        "global\n    maxconn 4096\n\n\
         defaults\n    mode {mode}\n    timeout connect 2s\n    timeout client 1h\n    \
         timeout server 1h\n    timeout check 2s\n    retries 2\n    option redispatch\n\n\
         frontend {name}_in\n    bind {bind}\n    default_backend {name}\n\n\
         backend {name}\n    balance {}\n    option httpchk GET /health\n    \
         http-check expect status 200\n    default-server inter 1s fall 2 rise 2\n",
        if mode == "tcp" {
            "leastconn"
        } else {
            "roundrobin"
        }
    );
    if mode == "tcp" {
        // A client's connection to a node that failed is closed, not left hanging: the
        // client reconnects and is sent to a live node.
        let _ = writeln!(out, "    default-server on-marked-down shutdown-sessions");
    }
    for backend in backends {
        match backend.admin {
            Some(admin) => {
                let _ = writeln!(
                    out,
                    "    server {} {} check addr {} port {}",
                    backend.name,
                    backend.address,
                    admin.ip(),
                    admin.port()
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "    server {} {}  # no admin port (--admin off): not checked",
                    backend.name, backend.address
                );
            }
        }
    }
    out
}

fn nginx(args: &LbArgs, header: &[String], backends: &[Backend]) -> String {
    let mut out = String::new();
    comment(&mut out, "# ", header);
    let _ = writeln!(
        out,
        "# nginx marks a server down only after failed requests (max_fails); nodes that were down\n\
         # or leaving when this was generated start marked down."
    );
    let bind = args
        .bind
        .clone()
        .unwrap_or_else(|| args.service.default_bind());
    let _ = writeln!(
        out,
        "events {{\n    worker_connections 1024;\n}}\n\nhttp {{\n    upstream scd_web {{"
    );
    for backend in backends {
        let _ = writeln!(
            out,
            "        server {} max_fails=2 fail_timeout=5s{};  # {}",
            backend.address,
            if backend.out_of_service { " down" } else { "" },
            backend.name
        );
    }
    let _ = write!(
        out,
        "    }}\n\n    server {{\n        listen {bind};\n        location / {{\n            \
         proxy_pass http://scd_web;\n            proxy_set_header Host $host;\n            \
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n            \
         proxy_next_upstream error timeout http_502 http_503;\n        }}\n    }}\n}}\n"
    );
    out
}

fn apache(args: &LbArgs, header: &[String], backends: &[Backend]) -> String {
    let mut out = String::new();
    comment(&mut out, "# ", header);
    let _ = writeln!(
        out,
        "# Needs mod_proxy, mod_proxy_http, mod_proxy_balancer, mod_lbmethod_byrequests and\n\
         # mod_slotmem_shm (Debian: a2enmod proxy_http proxy_balancer lbmethod_byrequests).\n\
         # Apache httpd marks a member down only after a failed request (retry); nodes that\n\
         # were down or leaving when this was generated start disabled."
    );
    let bind = args
        .bind
        .clone()
        .unwrap_or_else(|| args.service.default_bind());
    let _ = writeln!(out, "Listen {bind}\n<VirtualHost {bind}>");
    let _ = writeln!(out, "    <Proxy \"balancer://scd_web\">");
    for backend in backends {
        let _ = writeln!(
            out,
            "        BalancerMember \"http://{}\" route={} retry=5{}",
            backend.address,
            backend.name,
            if backend.out_of_service {
                " status=+D"
            } else {
                ""
            }
        );
    }
    let _ = write!(
        out,
        "        ProxySet lbmethod=byrequests\n    </Proxy>\n    \
         ProxyPass \"/\" \"balancer://scd_web/\"\n    \
         ProxyPassReverse \"/\" \"balancer://scd_web/\"\n</VirtualHost>\n"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cluster() -> Value {
        json!({
            "node": "a",
            "cluster": "shop",
            "nodes": [
                {"name": "b", "state": "down", "peer": "10.0.0.2:7946", "client": "10.0.0.2:6379",
                 "memcached": null, "admin": "10.0.0.2:34580"},
                {"name": "a", "state": "alive", "peer": "10.0.0.1:7946", "client": "10.0.0.1:6379",
                 "memcached": "10.0.0.1:11211", "admin": "10.0.0.1:34580"},
            ]
        })
    }

    fn args(balancer: Balancer, service: LbService) -> LbArgs {
        LbArgs {
            balancer,
            admin: String::new(),
            service,
            web_port: 8080,
            bind: None,
        }
    }

    #[test]
    fn haproxy_checks_each_web_server_through_its_nodes_admin_port() {
        let text = render(&args(Balancer::Haproxy, LbService::Web), &cluster()).expect("rendered");
        assert!(text.contains("mode http"), "{text}");
        assert!(text.contains("option httpchk GET /health"), "{text}");
        let a = text.find("server a 10.0.0.1:8080 check addr 10.0.0.1 port 34580");
        let b = text.find("server b 10.0.0.2:8080 check addr 10.0.0.2 port 34580");
        assert!(a.is_some() && b.is_some() && a < b, "{text}");
        assert!(text.contains("bind *:80"), "{text}");
    }

    #[test]
    fn haproxy_balances_the_redis_ports_over_tcp() {
        let text =
            render(&args(Balancer::Haproxy, LbService::Redis), &cluster()).expect("rendered");
        assert!(text.contains("mode tcp"), "{text}");
        assert!(text.contains("server a 10.0.0.1:6379 check"), "{text}");
        assert!(text.contains("shutdown-sessions"), "{text}");
    }

    #[test]
    fn a_node_without_a_memcached_port_is_named() {
        let error = render(&args(Balancer::Haproxy, LbService::Memcached), &cluster())
            .expect_err("b has no memcached port");
        assert!(
            error.to_string().contains("'b' has no memcached port"),
            "{error}"
        );
    }

    #[test]
    fn nginx_and_apache_start_with_the_down_node_marked() {
        let text = render(&args(Balancer::Nginx, LbService::Web), &cluster()).expect("rendered");
        assert!(
            text.contains("server 10.0.0.2:8080 max_fails=2 fail_timeout=5s down;"),
            "{text}"
        );
        assert!(
            text.contains("server 10.0.0.1:8080 max_fails=2 fail_timeout=5s;"),
            "{text}"
        );
        let text = render(&args(Balancer::Apache, LbService::Web), &cluster()).expect("rendered");
        assert!(
            text.contains("BalancerMember \"http://10.0.0.2:8080\" route=b retry=5 status=+D"),
            "{text}"
        );
        assert!(
            text.contains("BalancerMember \"http://10.0.0.1:8080\" route=a retry=5\n"),
            "{text}"
        );
    }

    #[test]
    fn only_haproxy_balances_the_cache_protocols() {
        for balancer in [Balancer::Nginx, Balancer::Apache] {
            let error =
                render(&args(balancer, LbService::Redis), &cluster()).expect_err("not supported");
            assert!(error.to_string().contains("use haproxy"), "{error}");
        }
    }

    #[test]
    fn node_names_become_identifiers() {
        assert_eq!(sanitized("web 1 \"x\""), "web_1__x_");
        assert_eq!(sanitized("node-1.a_b"), "node-1.a_b");
    }
}
