//! Reaping: a member failed for longer than `reconnect_timeout`, or left for longer than
//! `tombstone_timeout`, is forgotten — dropped from the table, from foca and from the metadata
//! records — so that neither the member list nor the full-state sync grows with every name ever
//! seen (docs/gossip.md, Reaping). Part of [`Core`]; no clock of its own: each failed or left
//! row arms one [`Timer::Reap`], and a row whose status changes before it fires makes it stale.

use std::collections::{BTreeSet, HashSet};

use foca::State;
use uuid::Uuid;

use super::{Core, Timer};
use crate::gossip::members::MemberStatus;

/// The reap timer armed for one row, and the row state it was armed for.
pub(super) struct PendingReap {
    token: u64,
    armed_for: (MemberStatus, Uuid, u64),
}

impl Core {
    /// After a row of the table changed: arms its reap timer when it has just become failed or
    /// left (the timeout starts now), and disarms it when it is live again or gone.
    pub(super) fn track_reap(&mut self, name: &str) {
        let Some(m) = self.table.get(name) else {
            self.reaps.remove(name);
            return;
        };
        let after = match m.status {
            MemberStatus::Failed => self.timings.reconnect_timeout,
            MemberStatus::Left => self.timings.tombstone_timeout,
            MemberStatus::Alive | MemberStatus::Leaving => {
                self.reaps.remove(name);
                return;
            }
        };
        let armed_for = (m.status, m.node_id, m.generation);
        if self
            .reaps
            .get(name)
            .is_some_and(|p| p.armed_for == armed_for)
        {
            return;
        }
        let token = self.next_reap_token;
        self.next_reap_token += 1;
        self.reaps
            .insert(name.to_string(), PendingReap { token, armed_for });
        self.out.timers.push((
            after,
            Timer::Reap {
                name: name.to_string(),
                token,
            },
        ));
    }

    /// A reap timer fired: forgets the member if the timer is still the one armed for its row.
    pub(super) fn reap(&mut self, name: &str, token: u64) {
        if self.reaps.get(name).map(|p| p.token) != Some(token) {
            return;
        }
        let Some(m) = self.table.get(name) else {
            self.reaps.remove(name);
            return;
        };
        let (status, after) = match m.status {
            MemberStatus::Failed => ("failed", self.timings.reconnect_timeout),
            MemberStatus::Left => ("left", self.timings.tombstone_timeout),
            _ => return,
        };
        tracing::info!(member = %name, addr = %m.addr, "member reaped: {status} for {}, forgotten", whole_units(after));
        self.forget(name);
    }

    /// Drops every trace of a member: its row, its reap timer, foca's down entry and its
    /// metadata record.
    pub(super) fn forget(&mut self, name: &str) {
        self.table.remove(name);
        self.reaps.remove(name);
        let down: Vec<_> = self
            .swim
            .iter_membership_state()
            .filter(|m| m.id().name == name && m.state() == State::Down)
            .map(|m| m.id().clone())
            .collect();
        for id in down {
            // foca's own timer for forgetting a down member; it removes only that exact
            // identity, and only while it is down.
            let _ = self
                .swim
                .handle_timer(foca::Timer::RemoveDown(id), &mut self.runtime);
        }
        let mut store = self.metas.lock().expect("meta lock");
        store.records.remove(name);
        store.changed.retain(|n| n != name);
    }

    /// The name of every member foca holds, in any state.
    pub(super) fn swim_names(&self) -> HashSet<String> {
        self.swim
            .iter_membership_state()
            .map(|m| m.id().name.clone())
            .collect()
    }

    /// Every anti-entropy round: drops the metadata records of names that neither foca nor the
    /// table has held for two rounds in a row (a record may arrive a moment before its member).
    pub(super) fn sweep_metas(&mut self) {
        let mut known = self.swim_names();
        known.extend(self.table.keys().cloned());
        known.insert(self.local.name.clone());
        let mut store = self.metas.lock().expect("meta lock");
        let orphans: BTreeSet<String> = store
            .records
            .keys()
            .filter(|n| !known.contains(n.as_str()))
            .cloned()
            .collect();
        for n in orphans.intersection(&self.meta_orphans) {
            store.records.remove(n);
        }
        self.meta_orphans = orphans.difference(&self.meta_orphans).cloned().collect();
    }
}

/// `72h`, `30m`, `6s` for whole hours, minutes or seconds; Rust's `Debug` form otherwise.
fn whole_units(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match (d.subsec_nanos(), s) {
        (0, s) if s > 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        (0, s) if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        (0, s) => format!("{s}s"),
        _ => format!("{d:?}"),
    }
}
