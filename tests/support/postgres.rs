//! A throwaway PostgreSQL server for the tests that need one. The first call to [`server`] in a
//! test binary starts it with `scripts/postgres.sh` (which installs Debian's `postgresql` when
//! the server is missing): a new cluster under `target/tmp/`, on a free loopback port, named
//! after this process so that test binaries running at once each have their own. It is stopped
//! by its process id when this test binary ends (the script's watcher), whichever way it ends.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// A running server: its port and process id.
#[derive(Debug)]
pub struct Postgres {
    pub port: u16,
    pub pid: u32,
}

/// The server of this test binary, started on first use. Panics, with the reason, when no
/// server can be started here.
pub fn server() -> &'static Postgres {
    static SERVER: OnceLock<Postgres> = OnceLock::new();
    SERVER.get_or_init(|| {
        let mut last = String::new();
        // A port found free may be taken before the server binds it: try a few.
        for attempt in 0..3 {
            let port = free_port();
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("postgres-{}-{attempt}", std::process::id()));
            let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres.sh"))
                .arg(&dir)
                .arg(port.to_string())
                .arg(std::process::id().to_string())
                .output()
                .expect("run scripts/postgres.sh");
            if out.status.success() {
                let pid = String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .expect("scripts/postgres.sh prints the server's pid");
                return Postgres { port, pid };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        panic!("no PostgreSQL server could be started for the tests: {last}");
    })
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

impl Postgres {
    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// A new, empty database of its own for one test; its URL.
    pub async fn fresh_database(&self) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let admin = sqlx::PgPool::connect(&self.url("postgres"))
            .await
            .expect("connect to the test server");
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("create a test database");
        admin.close().await;
        self.url(&name)
    }
}
