//! The workflow as data: a table that says, for each action, which roles may
//! perform it, from which stages, to which stage, and which payload checks and
//! effects apply. The engine in [`crate::apply`] interprets the table and knows
//! nothing of the intake domain beyond the vocabulary of checks and effects
//! below; another workflow is another table.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::model::{Role, Stage};

/// The kinds of step, without payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[borsh(use_discriminant = true)]
pub enum ActionKind {
    /// See [`crate::message::Action::Register`].
    Register = 0,
    /// See [`crate::message::Action::Scan`].
    Scan = 1,
    /// See [`crate::message::Action::Validate`].
    Validate = 2,
    /// See [`crate::message::Action::Qc`].
    Qc = 3,
    /// See [`crate::message::Action::Label`].
    Label = 4,
    /// See [`crate::message::Action::Handover`].
    Handover = 5,
    /// See [`crate::message::Action::Deliver`].
    Deliver = 6,
}

impl ActionKind {
    /// Every kind, in encoding order.
    pub const ALL: [ActionKind; 7] = [
        ActionKind::Register,
        ActionKind::Scan,
        ActionKind::Validate,
        ActionKind::Qc,
        ActionKind::Label,
        ActionKind::Handover,
        ActionKind::Deliver,
    ];

    /// The stable lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Register => "register",
            ActionKind::Scan => "scan",
            ActionKind::Validate => "validate",
            ActionKind::Qc => "qc",
            ActionKind::Label => "label",
            ActionKind::Handover => "handover",
            ActionKind::Deliver => "deliver",
        }
    }
}

/// Which package states an action may start from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum From {
    /// The package must not exist yet (the action creates it).
    Nothing,
    /// The package must exist and be in one of these stages.
    Stages(&'static [Stage]),
}

/// Where an action leaves the package.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Always this stage.
    To(Stage),
    /// Decided by the quality check's verdict.
    ByVerdict {
        /// When it passed.
        passed: Stage,
        /// When it failed.
        failed: Stage,
    },
}

/// A check on the payload against the package and the registry. Each has a
/// rejection code of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// The manifest names this chain and package, its supplier is the actor,
    /// and it is within the size limits.
    ManifestMatchesStep,
    /// The stored manifest's signature verifies under the supplier's key.
    ManifestSignature,
    /// The counted quantities equal the manifest's, line for line.
    CountsMatchManifest,
    /// A failed quality check names at least one issue.
    IssuesWhenFailed,
    /// The courier named in the payload is a registered, active courier.
    CourierRegistered,
    /// The courier named in the payload is the one on the label.
    CourierOnLabel,
    /// The actor is the courier on the label.
    ActorIsLabelCourier,
}

/// What an action writes into the package besides its stage and history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Create the package from the manifest.
    CreatePackage,
    /// Append the quality-check record.
    RecordQc,
    /// Set the label.
    SetLabel,
    /// Nothing beyond stage and history.
    None,
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// The action.
    pub action: ActionKind,
    /// Roles that may perform it.
    pub roles: &'static [Role],
    /// Where it may start from.
    pub from: From,
    /// Where it leads.
    pub next: Next,
    /// Payload checks, in order; the first failure is the rejection.
    pub checks: &'static [Check],
    /// What it writes.
    pub effect: Effect,
}

/// A whole workflow.
#[derive(Debug)]
pub struct Workflow {
    /// Its name.
    pub name: &'static str,
    /// Roles that may own a session.
    pub session_roles: &'static [Role],
    /// The rules, one per action.
    pub rules: &'static [Rule],
}

impl Workflow {
    /// The rule for `action`, if this workflow has one.
    pub fn rule(&self, action: ActionKind) -> Option<&Rule> {
        self.rules.iter().find(|r| r.action == action)
    }
}

/// The supply-chain intake workflow of the source paper, extended to delivery.
pub static INTAKE: Workflow = Workflow {
    name: "intake",
    session_roles: &[Role::Supplier, Role::Operator, Role::Inspector, Role::Courier],
    rules: &[
        Rule {
            action: ActionKind::Register,
            roles: &[Role::Supplier],
            from: From::Nothing,
            next: Next::To(Stage::Registered),
            checks: &[Check::ManifestMatchesStep],
            effect: Effect::CreatePackage,
        },
        Rule {
            action: ActionKind::Scan,
            roles: &[Role::Operator],
            from: From::Stages(&[Stage::Registered]),
            next: Next::To(Stage::Scanned),
            checks: &[],
            effect: Effect::None,
        },
        Rule {
            action: ActionKind::Validate,
            roles: &[Role::Operator],
            from: From::Stages(&[Stage::Scanned]),
            next: Next::To(Stage::Validated),
            checks: &[Check::ManifestSignature, Check::CountsMatchManifest],
            effect: Effect::None,
        },
        Rule {
            action: ActionKind::Qc,
            roles: &[Role::Inspector, Role::Operator],
            from: From::Stages(&[Stage::Validated]),
            next: Next::ByVerdict { passed: Stage::Inspected, failed: Stage::Quarantined },
            checks: &[Check::IssuesWhenFailed],
            effect: Effect::RecordQc,
        },
        Rule {
            action: ActionKind::Label,
            roles: &[Role::Operator],
            from: From::Stages(&[Stage::Inspected]),
            next: Next::To(Stage::Labeled),
            checks: &[Check::CourierRegistered],
            effect: Effect::SetLabel,
        },
        Rule {
            action: ActionKind::Handover,
            roles: &[Role::Operator],
            from: From::Stages(&[Stage::Labeled]),
            next: Next::To(Stage::HandedOver),
            checks: &[Check::CourierOnLabel],
            effect: Effect::None,
        },
        Rule {
            action: ActionKind::Deliver,
            roles: &[Role::Courier],
            from: From::Stages(&[Stage::HandedOver]),
            next: Next::To(Stage::Delivered),
            checks: &[Check::ActorIsLabelCourier],
            effect: Effect::None,
        },
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_intake_table_has_exactly_one_rule_per_action() {
        for kind in ActionKind::ALL {
            assert_eq!(INTAKE.rules.iter().filter(|r| r.action == kind).count(), 1, "{kind:?}");
        }
    }
}
