//! A command's connection: only reading (a dry run), or changing through a [`Session`]. The
//! reads are the same either way; only a changing run may reach the session.

use super::Session;
use postgres::Client;

/// Both boxed: a session is far larger than a bare connection, and a run holds only one.
pub enum Connection {
    Reading(Box<Client>),
    Changing(Box<Session>),
}

impl Connection {
    pub fn reading(client: Client) -> Connection {
        Connection::Reading(Box::new(client))
    }

    pub fn changing(session: Session) -> Connection {
        Connection::Changing(Box::new(session))
    }

    /// The connection, for reads.
    pub fn client(&mut self) -> &mut Client {
        match self {
            Connection::Reading(client) => client,
            Connection::Changing(session) => session.client(),
        }
    }

    /// The session, when this run changes the database.
    pub fn session(&mut self) -> Option<&mut Session> {
        match self {
            Connection::Reading(_) => None,
            Connection::Changing(session) => Some(session),
        }
    }
}
