//! The broker to measure, from `--url`: `mqtt://HOST[:PORT]` (also `tcp://`; port 1883 by
//! default) or `ws://HOST[:PORT][/PATH]` (port 8083 and path `/mqtt` by default, the
//! project's conventions). Load goes to this machine only: the host must resolve to a
//! loopback address.

use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Ws,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub transport: Transport,
    /// Without brackets for IPv6.
    pub host: String,
    pub port: u16,
    /// The WebSocket request path; empty for TCP.
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let bad = |why: &str| format!("bad --url {url:?}: {why}");
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected mqtt://HOST:PORT or ws://HOST:PORT/PATH"))?;
        let transport = match scheme.to_ascii_lowercase().as_str() {
            "mqtt" | "tcp" => Transport::Tcp,
            "ws" => Transport::Ws,
            "mqtts" | "ssl" | "tls" | "wss" => return Err(bad("TLS is not supported")),
            _ => return Err(bad("the scheme must be mqtt, tcp or ws")),
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in the host"))?;
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(bad("junk after the IPv6 address")),
                },
            }
        } else {
            match authority.split_once(':') {
                Some((_, port)) if port.contains(':') => {
                    return Err(bad("an IPv6 address must be in brackets"))
                }
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => match transport {
                Transport::Tcp => 1883,
                Transport::Ws => 8083,
            },
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(bad("the port must be a number from 1 to 65535")),
            },
        };
        let path = match transport {
            Transport::Tcp if path.is_empty() || path == "/" => String::new(),
            Transport::Tcp => return Err(bad("an mqtt:// URL has no path")),
            Transport::Ws if path.is_empty() => "/mqtt".to_string(),
            Transport::Ws if !path.starts_with('/') => {
                return Err(bad("the path must start with /"))
            }
            Transport::Ws => path.to_string(),
        };
        Ok(Target {
            transport,
            host: host.to_string(),
            port,
            path,
        })
    }

    /// The URL of the WebSocket handshake.
    pub fn ws_url(&self) -> String {
        if self.host.contains(':') {
            format!("ws://[{}]:{}{}", self.host, self.port, self.path)
        } else {
            format!("ws://{}:{}{}", self.host, self.port, self.path)
        }
    }

    /// Resolves the host to a loopback address; anything else is refused.
    pub async fn resolve(&self) -> Result<SocketAddr, String> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?
            .collect();
        pick_loopback(&self.host, &addrs)
    }
}

fn pick_loopback(host: &str, addrs: &[SocketAddr]) -> Result<SocketAddr, String> {
    if let Some(addr) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        return Err(format!(
            "{host} resolves to {}, which is not a loopback address: mqtt-bench only loads \
             brokers on this machine",
            addr.ip()
        ));
    }
    addrs
        .first()
        .copied()
        .ok_or_else(|| format!("{host} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Target {
        Target {
            transport: Transport::Tcp,
            host: host.into(),
            port,
            path: String::new(),
        }
    }

    #[test]
    fn mqtt_urls() {
        assert_eq!(
            Target::parse("mqtt://127.0.0.1:1884").unwrap(),
            tcp("127.0.0.1", 1884)
        );
        assert_eq!(
            Target::parse("mqtt://localhost").unwrap(),
            tcp("localhost", 1883)
        );
        assert_eq!(
            Target::parse("tcp://127.0.0.1:1883/").unwrap(),
            tcp("127.0.0.1", 1883)
        );
        assert_eq!(
            Target::parse("MQTT://[::1]:1999").unwrap(),
            tcp("::1", 1999)
        );
    }

    #[test]
    fn ws_urls() {
        let t = Target::parse("ws://127.0.0.1:8083/mqtt").unwrap();
        assert_eq!(t.transport, Transport::Ws);
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8083, "/mqtt")
        );
        assert_eq!(t.ws_url(), "ws://127.0.0.1:8083/mqtt");

        let t = Target::parse("ws://localhost").unwrap();
        assert_eq!((t.port, t.path.as_str()), (8083, "/mqtt"));

        let t = Target::parse("ws://[::1]:9001/x/y?z=1").unwrap();
        assert_eq!((t.host.as_str(), t.path.as_str()), ("::1", "/x/y?z=1"));
        assert_eq!(t.ws_url(), "ws://[::1]:9001/x/y?z=1");
    }

    #[test]
    fn refusals() {
        for url in [
            "127.0.0.1:1883",
            "http://127.0.0.1",
            "mqtts://127.0.0.1",
            "wss://127.0.0.1",
            "mqtt://:1883",
            "mqtt://127.0.0.1:0",
            "mqtt://127.0.0.1:65536",
            "mqtt://127.0.0.1:x",
            "mqtt://127.0.0.1/topic",
            "mqtt://user:pw@127.0.0.1",
            "mqtt://::1:1883",
            "mqtt://[::1",
            "mqtt://[::1]x",
        ] {
            assert!(Target::parse(url).is_err(), "{url} should be refused");
        }
    }

    #[test]
    fn only_loopback_is_a_target() {
        let lo: SocketAddr = "127.0.0.1:1883".parse().unwrap();
        let lo6: SocketAddr = "[::1]:1883".parse().unwrap();
        let other: SocketAddr = "192.0.2.1:1883".parse().unwrap();
        assert_eq!(pick_loopback("h", &[lo, lo6]), Ok(lo));
        assert!(pick_loopback("h", &[lo, other]).is_err());
        assert!(pick_loopback("h", &[]).is_err());
    }
}
