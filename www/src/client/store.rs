//! The profiles as localStorage keeps them: one JSON document under one key.

use serde::{Deserialize, Serialize};

use super::profile::{random_client_id, Profile};

/// The localStorage key; bump the suffix if the format ever changes incompatibly.
pub const KEY: &str = "bridge.client.v1";

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Stored {
    pub profiles: Vec<Profile>,
    pub selected: Option<u32>,
}

impl Stored {
    /// What was saved, or — on a first visit, or when what was saved cannot be read — one
    /// profile for the broker that served the page.
    pub fn parse(saved: Option<&str>, default_url: &str, random: u32) -> Stored {
        if let Some(stored) = saved.and_then(|json| serde_json::from_str::<Stored>(json).ok()) {
            return stored;
        }
        Stored {
            profiles: vec![Profile::new(
                1,
                "Local broker",
                default_url,
                random_client_id(random),
            )],
            selected: Some(1),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// An id no profile has.
    pub fn next_id(&self) -> u32 {
        self.profiles.iter().map(|p| p.id).max().unwrap_or(0) + 1
    }

    /// "Connection 2", "Connection 3", …: the first name not taken.
    pub fn next_name(&self) -> String {
        (self.profiles.len() + 1..)
            .map(|n| format!("Connection {n}"))
            .find(|name| self.profiles.iter().all(|p| &p.name != name))
            .unwrap_or_default()
    }

    pub fn get(&self, id: u32) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.id == id)
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut Profile> {
        self.profiles.iter_mut().find(|p| p.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "ws://127.0.0.1:8083/mqtt";

    #[test]
    fn a_first_visit_gets_one_profile_for_this_broker() {
        let s = Stored::parse(None, URL, 0x1234);
        assert_eq!(s.profiles.len(), 1);
        assert_eq!(s.profiles[0].url, URL);
        assert_eq!(s.profiles[0].client_id, "bridge-web-00001234");
        assert_eq!(s.selected, Some(1));
        assert_eq!(
            Stored::parse(Some("not json"), URL, 0),
            Stored::parse(None, URL, 0)
        );
    }

    #[test]
    fn saved_profiles_round_trip() {
        let mut s = Stored::parse(None, URL, 1);
        let id = s.next_id();
        let name = s.next_name();
        assert_eq!((id, name.as_str()), (2, "Connection 2"));
        s.profiles
            .push(Profile::new(id, &name, "wss://x/mqtt", "c".into()));
        s.selected = Some(id);
        let again = Stored::parse(Some(&s.to_json()), URL, 9);
        assert_eq!(again, s);
        assert_eq!(again.get(2).unwrap().url, "wss://x/mqtt");
        assert_eq!(again.next_name(), "Connection 3");
    }

    #[test]
    fn deleting_every_profile_is_remembered() {
        let empty = Stored::default().to_json();
        assert!(Stored::parse(Some(&empty), URL, 0).profiles.is_empty());
    }
}
