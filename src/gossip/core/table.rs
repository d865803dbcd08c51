//! The member table and the metadata records: how SWIM's notifications, metadata broadcasts
//! and synced states change who is listed with which status and tags. Part of [`Core`]; no I/O.

use foca::{Member as SwimMember, OwnedNotification, State};

use super::{Core, ForceLeaveError};
use crate::gossip::identity::NodeIdentity;
use crate::gossip::members::{Member, MemberStatus};
use crate::gossip::meta::{MemberMeta, Tags};
use crate::gossip::sync::{Refusal, SyncState};

impl Core {
    pub(super) fn notification(&mut self, note: OwnedNotification<NodeIdentity>) {
        match note {
            OwnedNotification::MemberUp(id) | OwnedNotification::Rename(_, id) => {
                self.member_up(id)
            }
            OwnedNotification::MemberDown(id) => self.member_down(id),
            OwnedNotification::Rejoin(id) => {
                tracing::warn!(
                    generation = id.generation,
                    "this agent was declared down by the cluster; rejoined with a new identity"
                );
                self.local.generation = id.generation;
                self.local.version += 1;
                self.publish_local_meta();
            }
            OwnedNotification::Defunct if self.local_status == MemberStatus::Left => {}
            OwnedNotification::Defunct => {
                tracing::warn!("this agent was declared down and cannot rejoin")
            }
            OwnedNotification::Active => tracing::debug!("gossip: connected to the cluster"),
            OwnedNotification::Idle => tracing::debug!("gossip: no other live member known"),
        }
    }

    fn member_up(&mut self, id: NodeIdentity) {
        if id.name == self.local.name {
            return;
        }
        if let Some(old) = self.table.get(&id.name) {
            if old.generation > id.generation && old.node_id == id.node_id {
                return;
            }
        }
        let meta = self
            .metas
            .lock()
            .expect("meta lock")
            .records
            .get(&id.name)
            .cloned();
        let (tags, leaving) = match &meta {
            Some(m) if m.node_id == id.node_id => (m.tags.clone(), m.leaving && m.describes(&id)),
            _ => (Tags::new(), false),
        };
        let status = if leaving {
            MemberStatus::Leaving
        } else {
            MemberStatus::Alive
        };
        let was = self.table.get(&id.name).map(|m| m.status);
        if was != Some(status) {
            tracing::info!(member = %id.name, addr = %id.addr, "member {}", if was.is_some() { "is alive again" } else { "joined" });
        }
        let name = id.name.clone();
        self.table.insert(
            id.name.clone(),
            Member {
                name: id.name,
                node_id: id.node_id,
                addr: id.addr,
                generation: id.generation,
                status,
                tags,
            },
        );
        self.track_reap(&name);
    }

    fn member_down(&mut self, id: NodeIdentity) {
        let metas = self.metas.lock().expect("meta lock");
        let left = metas
            .records
            .get(&id.name)
            .is_some_and(|m| m.leaving && m.describes(&id));
        drop(metas);
        if let Some(m) = self.table.get_mut(&id.name) {
            if m.generation != id.generation || m.node_id != id.node_id {
                return;
            }
            m.status = if left {
                MemberStatus::Left
            } else {
                MemberStatus::Failed
            };
            tracing::info!(member = %id.name, addr = %id.addr, "member {}", m.status.as_str());
            self.track_reap(&id.name);
        }
    }

    /// Reacts to metadata records that arrived or changed.
    pub(super) fn apply_meta_changes(&mut self) {
        let records: Vec<MemberMeta> = {
            let mut store = self.metas.lock().expect("meta lock");
            if store.changed.is_empty() {
                return;
            }
            let names = std::mem::take(&mut store.changed);
            names
                .iter()
                .filter_map(|n| store.records.get(n).cloned())
                .collect()
        };
        for meta in records {
            if meta.name == self.local.name {
                self.meta_about_self(meta);
                continue;
            }
            if let Some(m) = self.table.get_mut(&meta.name) {
                if m.node_id != meta.node_id {
                    continue;
                }
                m.tags = meta.tags.clone();
                if meta.generation == m.generation {
                    m.status = match (meta.leaving, m.status) {
                        (true, MemberStatus::Alive) => MemberStatus::Leaving,
                        (true, MemberStatus::Failed) => MemberStatus::Left,
                        // The member refuted a leave it did not make (a force-leave while alive).
                        (false, MemberStatus::Leaving) => MemberStatus::Alive,
                        (_, s) => s,
                    };
                }
                self.track_reap(&meta.name);
            }
        }
    }

    /// Someone spread a record under our name: refute it if it is about us (a force-leave while
    /// we live), or report the name conflict if it is another node.
    fn meta_about_self(&mut self, meta: MemberMeta) {
        if meta.node_id != self.local.node_id {
            tracing::error!(
                name = %meta.name, other_node_id = %meta.node_id,
                "another node claims this agent's node name; give one of them another -node name"
            );
            return;
        }
        if meta != self.local
            && (meta.generation, meta.version) >= (self.local.generation, self.local.version)
        {
            self.local.version = meta.version + 1;
            self.publish_local_meta();
        }
    }

    pub(super) fn publish_local_meta(&mut self) {
        match postcard::to_allocvec(&self.local) {
            Ok(bytes) => {
                if let Err(e) = self.swim.add_broadcast(&bytes) {
                    tracing::warn!(error = %e, "cannot spread this agent's tags (too large?)");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot encode this agent's tags"),
        }
        // Our own record is never "changed news" for ourselves.
        self.metas
            .lock()
            .expect("meta lock")
            .changed
            .retain(|n| n != &self.local.name);
    }

    pub(super) fn check_conflicts(&self, state: &SyncState) -> Result<(), Refusal> {
        let mut claims: Vec<&NodeIdentity> = vec![&state.from];
        claims.extend(
            state
                .members
                .iter()
                .filter(|m| m.state() != State::Down)
                .map(|m| m.id()),
        );
        for id in claims {
            if id.name == self.local.name && id.node_id != self.local.node_id {
                let me = self.swim.identity();
                return Err(Refusal::NameClaimedTwice {
                    name: id.name.clone(),
                    ours: (me.node_id, me.addr),
                    theirs: (id.node_id, id.addr),
                });
            }
            if id.node_id == self.local.node_id && id.name != self.local.name {
                return Err(Refusal::NodeIdInUse {
                    node_id: id.node_id,
                    holder: self.local.name.clone(),
                });
            }
            if let Some(m) = self.table.get(&id.name) {
                let live = matches!(m.status, MemberStatus::Alive | MemberStatus::Leaving);
                if live && m.node_id != id.node_id {
                    return Err(Refusal::NameInUse {
                        name: id.name.clone(),
                        holder: (m.node_id, m.addr),
                    });
                }
            }
        }
        Ok(())
    }

    pub(super) fn merge(&mut self, state: SyncState) {
        let mut updates: Vec<SwimMember<NodeIdentity>> = state.members;
        // A down member this agent does not know is news of nothing: it never saw it, or has
        // reaped it already. Taken, it would come back in every sync from a peer that has not
        // reaped yet, and circulate forever (docs/gossip.md, Reaping).
        let known = self.swim_names();
        updates.retain(|m| {
            m.state() != State::Down
                || m.id().name == self.local.name
                || known.contains(m.id().name.as_str())
        });
        if !updates.iter().any(|m| m.id() == &state.from) {
            updates.push(SwimMember::alive(state.from));
        }
        if let Err(e) = self
            .swim
            .apply_many(updates.into_iter(), true, &mut self.runtime)
        {
            tracing::debug!(error = %e, "applying synced members failed");
        }
        // Records only of members foca holds now: a reaped member's record stays forgotten.
        let known = self.swim_names();
        for meta in state.metas {
            if meta.name == self.local.name {
                if meta.node_id == self.local.node_id {
                    self.meta_about_self(meta);
                }
                continue;
            }
            if !known.contains(meta.name.as_str()) {
                continue;
            }
            if let Ok(bytes) = postcard::to_allocvec(&meta) {
                let _ = self.swim.add_broadcast(&bytes);
            }
        }
        // Members learned here may precede their metadata; refresh their tags now.
        let names: Vec<String> = self.table.keys().cloned().collect();
        self.metas.lock().expect("meta lock").changed.extend(names);
    }

    pub(super) fn state(&self) -> SyncState {
        let mut members: Vec<SwimMember<NodeIdentity>> =
            self.swim.iter_membership_state().cloned().collect();
        members.push(SwimMember::alive(self.swim.identity().clone()));
        let mut metas: Vec<MemberMeta> = self
            .metas
            .lock()
            .expect("meta lock")
            .records
            .values()
            .cloned()
            .collect();
        metas.retain(|m| m.name != self.local.name);
        metas.push(self.local.clone());
        SyncState {
            from: self.swim.identity().clone(),
            members,
            metas,
        }
    }

    pub(super) fn force_leave_member(
        &mut self,
        name: &str,
        prune: bool,
    ) -> Result<(), ForceLeaveError> {
        if name == self.local.name {
            return Err(ForceLeaveError::IsSelf(name.to_string()));
        }
        let Some(m) = self.table.get(name).cloned() else {
            return Err(ForceLeaveError::NoSuchMember(name.to_string()));
        };
        if matches!(m.status, MemberStatus::Alive | MemberStatus::Leaving) {
            return Err(ForceLeaveError::StillLive {
                name: name.to_string(),
                status: m.status,
            });
        }
        let version = self
            .metas
            .lock()
            .expect("meta lock")
            .records
            .get(name)
            .map(|r| r.version)
            .unwrap_or(0);
        let meta = MemberMeta {
            name: m.name.clone(),
            node_id: m.node_id,
            generation: m.generation,
            version: version + 1,
            tags: m.tags.clone(),
            leaving: true,
        };
        if let Ok(bytes) = postcard::to_allocvec(&meta) {
            let _ = self.swim.add_broadcast(&bytes);
        }
        if let Some(e) = self.table.get_mut(name) {
            e.status = MemberStatus::Left;
        }
        if prune {
            self.forget(name);
        } else {
            self.track_reap(name);
        }
        tracing::info!(member = %name, prune, "forced member to leave");
        Ok(())
    }
}
