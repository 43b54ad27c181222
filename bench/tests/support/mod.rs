//! The gateway the bench crate's tests run against: in process, one plain-HTTP listener,
//! one pixel with an access key, rate limits off (a load generator is one address).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use capig::config::{Config, ListenerKind};
use capig::ingest::{ServeOptions, Server};

pub const PIXEL: &str = "1234567890123456";
pub const ACCESS_KEY: &str = "load-key";

pub struct Gateway {
    pub server: Server,
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Gateway {
    /// Starts a gateway delivering to `graph_url`, its files in a fresh temp dir named
    /// after `name`.
    pub fn start(name: &str, graph_url: &str) -> Gateway {
        let dir = std::env::temp_dir().join(format!("capig-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "t\n").unwrap();
        std::fs::write(dir.join("keys"), format!("{ACCESS_KEY}\n")).unwrap();
        let text = format!(
            r#"
[[listeners]]
addr = "127.0.0.1:0"
kind = "http"

[[domains]]
name = "capig.shop.example"
origins = ["https://www.shop.example"]

[[pixels]]
id = "{PIXEL}"
access_token_file = "token"
access_keys_file = "keys"

[upstream]
graph_url = "{graph_url}"

[spool]
dir = "spool"

[limits]
requests_per_second_per_ip = 0
requests_per_second_per_connection = 0
"#
        );
        let config = Config::from_toml(&text, &dir.join("capig.toml"), &[]).unwrap();
        let server = Server::start(config, ServeOptions::default()).unwrap();
        let addr = server.listening().iter().find(|(k, _)| *k == ListenerKind::Http).unwrap().1;
        Gateway { server, addr, dir }
    }

    pub fn stop(self) {
        self.server.shutdown(Duration::from_secs(2));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
