//! A named set of rules (blacklist rules, thresholds) as the write path
//! reads it: the rules by id are the source of truth, changed under a lock
//! and saved before the change is published; the write path reads an
//! immutable compiled snapshot, swapped as a whole, and knows from a
//! version number when its cached copy is stale.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

/// What a kind of rule provides: a check of one rule and a compiler of the
/// whole set into the form the write path reads.
pub trait Compile: Clone {
    type Compiled: Default + Send + Sync;
    fn check(&self) -> Result<(), String>;
    fn compile(rules: &BTreeMap<String, Self>) -> Result<Self::Compiled, String>;
}

/// Versions are unique in the process, across every rule set: a per-thread
/// cache keyed by version alone can never take one set's snapshot for
/// another's.
static NEXT_VERSION: AtomicU64 = AtomicU64::new(1);

fn next_version() -> u64 {
    NEXT_VERSION.fetch_add(1, Ordering::Relaxed)
}

pub struct RuleSet<T: Compile> {
    rules: Mutex<BTreeMap<String, T>>,
    compiled: RwLock<Arc<T::Compiled>>,
    /// New on every change, never reused (process-wide; never 0).
    version: AtomicU64,
    empty: AtomicBool,
}

impl<T: Compile> Default for RuleSet<T> {
    fn default() -> Self {
        RuleSet {
            rules: Mutex::new(BTreeMap::new()),
            compiled: RwLock::new(Arc::new(T::Compiled::default())),
            version: AtomicU64::new(next_version()),
            empty: AtomicBool::new(true),
        }
    }
}

impl<T: Compile> RuleSet<T> {
    /// No rules (one atomic load): the write path can skip everything.
    pub fn is_empty(&self) -> bool {
        self.empty.load(Ordering::Acquire)
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn compiled(&self) -> Arc<T::Compiled> {
        self.compiled.read().clone()
    }

    pub fn list(&self) -> Vec<(String, T)> {
        self.rules
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Replaces the whole set (at start, from StateDir); invalid rules are
    /// left out and reported.
    pub fn load(&self, mut rules: BTreeMap<String, T>) -> Vec<String> {
        let mut errors = Vec::new();
        rules.retain(|id, r| match r.check() {
            Ok(()) => true,
            Err(e) => {
                errors.push(format!("{id}: {e}"));
                false
            }
        });
        match T::compile(&rules) {
            Ok(c) => {
                let mut guard = self.rules.lock();
                *guard = rules;
                self.publish(c, guard.is_empty());
            }
            Err(e) => errors.push(e),
        }
        errors
    }

    /// Inserts or replaces `id`; `persist` saves the new set (under the
    /// lock, so saves happen in order). Nothing changes if the rule is
    /// invalid or the save fails. Ok(true) for a new rule.
    pub fn put(
        &self,
        id: &str,
        rule: T,
        persist: impl FnOnce(&BTreeMap<String, T>) -> Result<(), String>,
    ) -> Result<bool, PutError> {
        rule.check().map_err(PutError::Invalid)?;
        let mut guard = self.rules.lock();
        let mut next = guard.clone();
        let created = next.insert(id.to_string(), rule).is_none();
        let compiled = T::compile(&next).map_err(PutError::Invalid)?;
        persist(&next).map_err(PutError::Persist)?;
        *guard = next;
        self.publish(compiled, guard.is_empty());
        Ok(created)
    }

    /// Removes `id`; Ok(false) if there was none.
    pub fn delete(
        &self,
        id: &str,
        persist: impl FnOnce(&BTreeMap<String, T>) -> Result<(), String>,
    ) -> Result<bool, PutError> {
        let mut guard = self.rules.lock();
        if !guard.contains_key(id) {
            return Ok(false);
        }
        let mut next = guard.clone();
        next.remove(id);
        let compiled = T::compile(&next).map_err(PutError::Invalid)?;
        persist(&next).map_err(PutError::Persist)?;
        *guard = next;
        self.publish(compiled, guard.is_empty());
        Ok(true)
    }

    fn publish(&self, compiled: T::Compiled, empty: bool) {
        *self.compiled.write() = Arc::new(compiled);
        self.version.store(next_version(), Ordering::Release);
        self.empty.store(empty, Ordering::Release);
    }
}

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum PutError {
    /// The rule (or the set with it) is invalid: 400.
    Invalid(String),
    /// StateDir could not be written: 500, nothing changed.
    Persist(String),
}
