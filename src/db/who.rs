//! Who a server session is, in the one form every message names it: `pid 123 (app, 10.0.0.1)`,
//! so an operator matching a refusal against `pg_stat_activity` reads the same words wherever
//! the session was met (a blocker, the migration lock's holder, a role's predating session).

/// `pid 123 (app, 10.0.0.1)`; `client_addr` None leaves the address out (a blocker's look
/// does not read it), and an empty application name says so.
pub fn session_label(pid: i32, application_name: &str, client_addr: Option<&str>) -> String {
    let app = if application_name.is_empty() {
        "no application name"
    } else {
        application_name
    };
    match client_addr {
        Some(addr) => format!("pid {pid} ({app}, {addr})"),
        None => format!("pid {pid} ({app})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_named_by_pid_application_and_address() {
        assert_eq!(
            session_label(42, "ruleiq-api", Some("10.0.0.7")),
            "pid 42 (ruleiq-api, 10.0.0.7)"
        );
        assert_eq!(
            session_label(42, "", Some("local")),
            "pid 42 (no application name, local)"
        );
        assert_eq!(session_label(7, "psql", None), "pid 7 (psql)");
    }
}
