//! A consistency check of the ledger's own bookkeeping, for tests and the
//! deterministic simulation: the counters, the acceptance order, the package
//! locks and the per-session sequence numbers must describe the same world.
//! It reads everything and changes nothing; a failure names the first
//! inconsistency found.

use std::collections::BTreeSet;

use super::{Ledger, SessionStatus};
use tandem_core::Hash;

impl Ledger {
    /// Check that the ledger's bookkeeping is consistent with its sessions.
    /// Costs a walk over every session and step: for tests, not for the
    /// request path.
    pub fn audit(&self) -> Result<(), String> {
        let mut pending = 0usize;
        let mut pending_keys: BTreeSet<(Hash, u64)> = BTreeSet::new();
        for (id, s) in &self.sessions {
            if *id != s.id {
                return Err(format!("session {} is filed under {id}", s.id));
            }
            let mut prev: Option<u64> = None;
            for rec in &s.steps {
                let seq = rec.signed.step.seq;
                if rec.signed.step.session != *id {
                    return Err(format!("session {id} holds a step of session {}", rec.signed.step.session));
                }
                if let Some(p) = prev {
                    if seq != p + 1 {
                        return Err(format!("session {id}: seq {seq} follows {p}"));
                    }
                }
                prev = Some(seq);
                if rec.finality.is_some() != (seq <= s.chain_seq) {
                    return Err(format!("session {id}: step {seq} final = {}, but chain_seq is {}", rec.finality.is_some(), s.chain_seq));
                }
                if rec.finality.is_none() && s.live() {
                    pending += 1;
                    pending_keys.insert((*id, seq));
                }
            }
            if s.status == SessionStatus::Finalized && s.pending().next().is_some() {
                return Err(format!("session {id} is finalized with steps pending"));
            }
            if !s.live() && (!s.locks.is_empty() || s.inflight.is_some()) {
                return Err(format!("session {id} is {:?} but holds locks or a batch in flight", s.status));
            }
            if s.live() && !self.open_order.contains(id) {
                return Err(format!("live session {id} is missing from the open order"));
            }
            for p in &s.locks {
                if self.locks.get(p) != Some(id) {
                    return Err(format!("session {id} thinks it locks {p}, the lock table says {:?}", self.locks.get(p)));
                }
            }
        }
        if pending != self.pending_steps {
            let holders: Vec<String> =
                pending_keys.iter().map(|(id, seq)| format!("{id:.8}#{seq} {:?}", self.sessions[id].status)).collect();
            return Err(format!("pending_steps is {}, the sessions hold {pending} pending steps: {holders:?}", self.pending_steps));
        }
        let ordered: BTreeSet<(Hash, u64)> = self.order.iter().copied().collect();
        if ordered.len() != self.order.len() {
            return Err("the acceptance order lists a step twice".into());
        }
        if ordered != pending_keys {
            let extra = ordered.difference(&pending_keys).next();
            let missing = pending_keys.difference(&ordered).next();
            return Err(format!("the acceptance order and the pending steps differ (extra {extra:?}, missing {missing:?})"));
        }
        for (p, id) in &self.locks {
            match self.sessions.get(id) {
                Some(s) if s.live() && s.locks.contains(p) => {}
                _ => return Err(format!("package {p} is locked to {id}, which does not hold it")),
            }
        }
        Ok(())
    }
}
