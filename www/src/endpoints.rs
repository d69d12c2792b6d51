//! Where this broker can be reached, worked out from the page's own address.
//!
//! The web app is served by the broker's HTTP listener, so the host that served the page
//! is the broker's host. The MQTT ports are the defaults (EMQX's conventions); a broker
//! started with other `--tcp`/`--ws` addresses will later report its real ones through
//! the admin API. Kept free of web-sys so it is tested natively.

/// MQTT over TCP.
pub const DEFAULT_TCP_PORT: u16 = 1883;
/// MQTT over WebSocket.
pub const DEFAULT_WS_PORT: u16 = 8083;
/// The path the WebSocket listener answers on.
pub const WS_PATH: &str = "/mqtt";
/// The web app and the admin API.
pub const DEFAULT_HTTP_PORT: u16 = 18083;

/// The host used when the page has none (opened from a file, say).
const FALLBACK_HOST: &str = "127.0.0.1";

/// The broker's endpoints as seen from this browser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// The host as a command-line tool takes it: no brackets around an IPv6 address.
    pub host: String,
    /// `mqtt://HOST:1883`
    pub mqtt: String,
    /// `ws://HOST:8083/mqtt` (`wss://` when the page itself came over TLS: browsers
    /// refuse plain WebSockets from a secure page).
    pub ws: String,
    /// The web app and admin API: the page's own origin.
    pub http: String,
}

impl Endpoints {
    /// Derives the endpoints from `location.protocol` (`"http:"`), `location.hostname`
    /// (`"127.0.0.1"`, `"[::1]"`) and `location.origin` (`"http://127.0.0.1:18083"`).
    pub fn from_location(protocol: &str, hostname: &str, origin: &str) -> Self {
        let bare = hostname.trim_start_matches('[').trim_end_matches(']');
        let host = if bare.is_empty() { FALLBACK_HOST } else { bare };
        // In a URL an IPv6 address goes between brackets.
        let url_host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let ws_scheme = if protocol == "https:" { "wss" } else { "ws" };
        let http = if origin.starts_with("http://") || origin.starts_with("https://") {
            origin.trim_end_matches('/').to_owned()
        } else {
            // `file://` pages have the origin "null".
            format!("http://{url_host}:{DEFAULT_HTTP_PORT}")
        };
        Self {
            host: host.to_owned(),
            mqtt: format!("mqtt://{url_host}:{DEFAULT_TCP_PORT}"),
            ws: format!("{ws_scheme}://{url_host}:{DEFAULT_WS_PORT}{WS_PATH}"),
            http,
        }
    }

    /// The command that subscribes a terminal to `topic`.
    pub fn mosquitto_sub(&self, topic: &str) -> String {
        format!(
            "mosquitto_sub -h {} -p {DEFAULT_TCP_PORT} -t {} -v",
            shell_quote(&self.host),
            shell_quote(topic)
        )
    }

    /// The command that publishes `message` on `topic` from a terminal.
    pub fn mosquitto_pub(&self, topic: &str, message: &str) -> String {
        format!(
            "mosquitto_pub -h {} -p {DEFAULT_TCP_PORT} -t {} -m {}",
            shell_quote(&self.host),
            shell_quote(topic),
            shell_quote(message)
        )
    }

    /// The same exchange with MQTT.js in a browser or in node.
    pub fn mqtt_js(&self, topic: &str, message: &str) -> String {
        let (url, topic, message) = (js_quote(&self.ws), js_quote(topic), js_quote(message));
        format!(
            "const client = mqtt.connect({url});\n\
             client.on('connect', () => {{\n  \
               client.subscribe({topic});\n  \
               client.publish({topic}, {message});\n\
             }});\n\
             client.on('message', (topic, payload) => console.log(topic, payload.toString()));"
        )
    }
}

/// Quotes `s` for a POSIX shell, leaving plain words (`topic_1`, `a/b`) bare so the
/// common commands read as people type them.
pub fn shell_quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:@%+=,".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A single-quoted JavaScript string literal.
pub fn js_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '\'' => out.push_str(r"\'"),
            '\n' => out.push_str(r"\n"),
            '\r' => out.push_str(r"\r"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_by_the_broker() {
        let e = Endpoints::from_location("http:", "127.0.0.1", "http://127.0.0.1:18083");
        assert_eq!(e.host, "127.0.0.1");
        assert_eq!(e.mqtt, "mqtt://127.0.0.1:1883");
        assert_eq!(e.ws, "ws://127.0.0.1:8083/mqtt");
        assert_eq!(e.http, "http://127.0.0.1:18083");
    }

    #[test]
    fn named_host_and_tls_page() {
        let e = Endpoints::from_location("https:", "broker.lan", "https://broker.lan");
        assert_eq!(e.mqtt, "mqtt://broker.lan:1883");
        assert_eq!(e.ws, "wss://broker.lan:8083/mqtt");
        assert_eq!(e.http, "https://broker.lan");
    }

    #[test]
    fn ipv6_host_is_bracketed_in_urls_only() {
        let e = Endpoints::from_location("http:", "[::1]", "http://[::1]:18083");
        assert_eq!(e.host, "::1");
        assert_eq!(e.mqtt, "mqtt://[::1]:1883");
        assert_eq!(e.ws, "ws://[::1]:8083/mqtt");
        assert_eq!(e.mosquitto_sub("t"), "mosquitto_sub -h ::1 -p 1883 -t t -v");
    }

    #[test]
    fn page_opened_from_a_file() {
        let e = Endpoints::from_location("file:", "", "null");
        assert_eq!(e.mqtt, "mqtt://127.0.0.1:1883");
        assert_eq!(e.http, "http://127.0.0.1:18083");
    }

    #[test]
    fn the_readme_commands() {
        let e = Endpoints::from_location("http:", "127.0.0.1", "http://127.0.0.1:18083");
        assert_eq!(
            e.mosquitto_pub("topic_1", "hello"),
            "mosquitto_pub -h 127.0.0.1 -p 1883 -t topic_1 -m hello"
        );
        assert_eq!(
            e.mosquitto_sub("topic_1"),
            "mosquitto_sub -h 127.0.0.1 -p 1883 -t topic_1 -v"
        );
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("sensors/+/temp"), "sensors/+/temp");
        assert_eq!(shell_quote("#"), "'#'");
        assert_eq!(shell_quote("a/#"), "'a/#'");
        assert_eq!(shell_quote("hello world"), "'hello world'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn js_quoting() {
        assert_eq!(js_quote("topic_1"), "'topic_1'");
        assert_eq!(js_quote(r"it's \ok"), r"'it\'s \\ok'");
        let snippet = Endpoints::from_location("http:", "h", "http://h:18083").mqtt_js("t", "m");
        assert!(snippet.starts_with("const client = mqtt.connect('ws://h:8083/mqtt');"));
        assert!(snippet.contains("client.publish('t', 'm');"));
    }
}
