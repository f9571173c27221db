//! Authorisation: may subject S do action A on object O?
//!
//! Roles grant actions over resource types, either on every object of that
//! type or only on objects the subject owns. Every HTTP handler asks this
//! module; nothing else decides permissions. The module is pure so the whole
//! matrix can be tested without a server.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A site-wide role. Every human user is a `member`; `owner` and
/// `template-admin` are granted on top of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Owner,
    TemplateAdmin,
    Member,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Owner, Role::TemplateAdmin, Role::Member];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::TemplateAdmin => "template-admin",
            Role::Member => "member",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown role {0:?}: expected one of owner, template-admin, member")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// The kinds of object permissions are granted over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resource {
    User,
    Organization,
    Template,
    Workspace,
    /// Uploaded archives; "owned" by whoever uploaded them.
    File,
    ProvisionerJob,
    /// Daemons and the keys external ones authenticate with.
    ProvisionerDaemon,
    /// An unclaimed prebuild (owned by the prebuilds user). Checked before
    /// `Workspace`, so template admins can manage the pool without any
    /// right over people's workspaces.
    PrebuiltWorkspace,
}

impl Resource {
    pub const ALL: [Resource; 8] = [
        Resource::User,
        Resource::Organization,
        Resource::Template,
        Resource::Workspace,
        Resource::File,
        Resource::ProvisionerJob,
        Resource::ProvisionerDaemon,
        Resource::PrebuiltWorkspace,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Resource::User => "user",
            Resource::Organization => "organization",
            Resource::Template => "template",
            Resource::Workspace => "workspace",
            Resource::File => "file",
            Resource::ProvisionerJob => "provisioner job",
            Resource::ProvisionerDaemon => "provisioner daemon",
            Resource::PrebuiltWorkspace => "prebuilt workspace",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Create,
    Read,
    Update,
    Delete,
}

impl Action {
    pub const ALL: [Action; 4] = [Action::Create, Action::Read, Action::Update, Action::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Read => "read",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    pub user_id: Uuid,
    pub roles: Vec<Role>,
}

/// What is asked about. `owner` is the user the object belongs to (for a
/// user object, that user); `None` for objects nobody owns yet, such as a
/// user about to be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Object {
    pub resource: Resource,
    pub owner: Option<Uuid>,
}

impl Object {
    pub fn user(id: Uuid) -> Self {
        Object { resource: Resource::User, owner: Some(id) }
    }

    /// Any object of a type, owned by nobody in particular: asking about it
    /// asks whether the subject holds the permission site-wide.
    pub fn any(resource: Resource) -> Self {
        Object { resource, owner: None }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// Every object of the resource type.
    All,
    /// Only objects owned by the subject.
    Own,
}

struct Grant {
    resource: Resource,
    actions: &'static [Action],
    scope: Scope,
}

const ALL_ACTIONS: &[Action] = &Action::ALL;
const READ: &[Action] = &[Action::Read];
const READ_UPDATE: &[Action] = &[Action::Read, Action::Update];
const CREATE_READ: &[Action] = &[Action::Create, Action::Read];
const READ_UPDATE_DELETE: &[Action] = &[Action::Read, Action::Update, Action::Delete];

const fn grant(resource: Resource, actions: &'static [Action], scope: Scope) -> Grant {
    Grant { resource, actions, scope }
}

const OWNER_GRANTS: &[Grant] = &[
    grant(Resource::User, ALL_ACTIONS, Scope::All),
    grant(Resource::Organization, ALL_ACTIONS, Scope::All),
    grant(Resource::Template, ALL_ACTIONS, Scope::All),
    grant(Resource::Workspace, ALL_ACTIONS, Scope::All),
    grant(Resource::File, ALL_ACTIONS, Scope::All),
    grant(Resource::ProvisionerJob, ALL_ACTIONS, Scope::All),
    grant(Resource::ProvisionerDaemon, ALL_ACTIONS, Scope::All),
    grant(Resource::PrebuiltWorkspace, ALL_ACTIONS, Scope::All),
];

const TEMPLATE_ADMIN_GRANTS: &[Grant] = &[
    grant(Resource::User, READ, Scope::All),
    grant(Resource::Organization, READ, Scope::All),
    grant(Resource::Template, ALL_ACTIONS, Scope::All),
    grant(Resource::Workspace, READ, Scope::All),
    grant(Resource::File, CREATE_READ, Scope::All),
    grant(Resource::ProvisionerJob, READ, Scope::All),
    grant(Resource::ProvisionerDaemon, READ, Scope::All),
    // Deleting needs read + update + delete; template admins may do that to
    // the pool, and nothing more than read to anyone's workspace.
    grant(Resource::PrebuiltWorkspace, READ_UPDATE_DELETE, Scope::All),
];

const MEMBER_GRANTS: &[Grant] = &[
    grant(Resource::User, READ_UPDATE, Scope::Own),
    grant(Resource::Organization, READ, Scope::All),
    grant(Resource::Template, READ, Scope::All),
    grant(Resource::Workspace, ALL_ACTIONS, Scope::Own),
    grant(Resource::File, CREATE_READ, Scope::Own),
];

fn grants(role: Role) -> &'static [Grant] {
    match role {
        Role::Owner => OWNER_GRANTS,
        Role::TemplateAdmin => TEMPLATE_ADMIN_GRANTS,
        Role::Member => MEMBER_GRANTS,
    }
}

fn scopes(subject: &Subject, action: Action, resource: Resource) -> impl Iterator<Item = Scope> + '_ {
    subject
        .roles
        .iter()
        .flat_map(|role| grants(*role))
        .filter(move |g| g.resource == resource && g.actions.contains(&action))
        .map(|g| g.scope)
}

/// A refusal, in a person's words: what was refused, and which roles would
/// have allowed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("you may not {attempt}")]
pub struct Denied {
    /// What was refused: "create users", "delete another user's workspace".
    pub attempt: String,
    /// The roles any one of which would have allowed it, least powerful first.
    pub needs: Vec<Role>,
}

impl Denied {
    pub fn new(subject: &Subject, action: Action, object: Object) -> Denied {
        let resource = object.resource.as_str();
        let target = match object.owner {
            None => format!("{resource}s"),
            Some(owner) if owner == subject.user_id && object.resource == Resource::User => "your account".into(),
            Some(owner) if owner == subject.user_id => format!("your {resource}"),
            Some(_) if object.resource == Resource::User => "other users".into(),
            Some(_) => format!("another user's {resource}"),
        };
        let needs = Role::ALL
            .into_iter()
            .rev()
            .filter(|role| {
                let holder = Subject { user_id: subject.user_id, roles: vec![*role] };
                allows(&holder, action, object)
            })
            .collect();
        Denied { attempt: format!("{} {target}", action.as_str()), needs }
    }

    /// Names the refused attempt as the person thinks of it ("read prebuild
    /// status") where the resource checked would not tell them.
    pub fn attempting(mut self, attempt: impl Into<String>) -> Denied {
        self.attempt = attempt.into();
        self
    }

    /// "It needs the template-admin or owner role."
    pub fn needs_sentence(&self) -> String {
        match self.needs.as_slice() {
            [] => "No role allows it.".into(),
            [role] => format!("It needs the {role} role."),
            [first @ .., last] => {
                let first: Vec<&str> = first.iter().map(|r| r.as_str()).collect();
                format!("It needs the {} or {last} role.", first.join(", "))
            }
        }
    }
}

fn allows(subject: &Subject, action: Action, object: Object) -> bool {
    scopes(subject, action, object.resource).any(|scope| match scope {
        Scope::All => true,
        Scope::Own => object.owner == Some(subject.user_id),
    })
}

/// May `subject` do `action` on `object`?
pub fn authorize(subject: &Subject, action: Action, object: Object) -> Result<(), Denied> {
    if allows(subject, action, object) { Ok(()) } else { Err(Denied::new(subject, action, object)) }
}

/// Which objects of a type a listing may show, so the store can filter in SQL
/// instead of loading everything and asking object by object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    All,
    OwnedBy(Uuid),
    Nothing,
}

pub fn visibility(subject: &Subject, action: Action, resource: Resource) -> Visibility {
    let mut visibility = Visibility::Nothing;
    for scope in scopes(subject, action, resource) {
        match scope {
            Scope::All => return Visibility::All,
            Scope::Own => visibility = Visibility::OwnedBy(subject.user_id),
        }
    }
    visibility
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn subject(roles: &[Role]) -> Subject {
        Subject { user_id: Uuid::from_u128(1), roles: roles.to_vec() }
    }

    const ME: Uuid = Uuid::from_u128(1);
    const OTHER: Uuid = Uuid::from_u128(2);

    /// roles, action, resource, owner, allowed
    type Case<'a> = (&'a [Role], Action, Resource, Option<Uuid>, bool);

    #[test]
    fn role_matrix() {
        use Action::*;
        use Resource::*;
        use Role::*;
        let member: &[Role] = &[Member];
        let admin: &[Role] = &[TemplateAdmin, Member];
        let owner: &[Role] = &[Owner, Member];
        let cases: &[Case] = &[
            // users
            (member, Create, User, None, false),
            (admin, Create, User, None, false),
            (owner, Create, User, None, true),
            (member, Read, User, Some(ME), true),
            (member, Read, User, Some(OTHER), false),
            (member, Update, User, Some(ME), true),
            (member, Delete, User, Some(ME), false),
            (admin, Read, User, Some(OTHER), true),
            (admin, Update, User, Some(OTHER), false),
            (owner, Delete, User, Some(OTHER), true),
            // templates
            (member, Read, Template, None, true),
            (member, Create, Template, None, false),
            (admin, Create, Template, None, true),
            (admin, Delete, Template, None, true),
            // workspaces
            (member, Create, Workspace, Some(ME), true),
            (member, Delete, Workspace, Some(ME), true),
            (member, Read, Workspace, Some(OTHER), false),
            (admin, Read, Workspace, Some(OTHER), true),
            (admin, Delete, Workspace, Some(OTHER), false),
            (owner, Delete, Workspace, Some(OTHER), true),
            // files and jobs
            (member, Read, File, Some(ME), true),
            (member, Read, File, Some(OTHER), false),
            (admin, Read, File, Some(OTHER), true),
            (member, Read, ProvisionerJob, None, false),
            (admin, Read, ProvisionerJob, None, true),
            (admin, Update, ProvisionerJob, None, false),
            (admin, Create, ProvisionerDaemon, None, false),
            (owner, Create, ProvisionerDaemon, None, true),
            // the pool
            (admin, Delete, PrebuiltWorkspace, None, true),
            (admin, Create, PrebuiltWorkspace, None, false),
            (member, Read, PrebuiltWorkspace, None, false),
            (owner, Delete, PrebuiltWorkspace, None, true),
            // no roles at all (the prebuilds system user)
            (&[], Read, User, Some(ME), false),
            (&[], Read, Template, None, false),
        ];
        for &(roles, action, resource, owner, allowed) in cases {
            let got = authorize(&subject(roles), action, Object { resource, owner }).is_ok();
            assert_eq!(got, allowed, "{roles:?} {action:?} {resource:?} owner={owner:?}");
        }
    }

    #[test]
    fn a_refusal_names_the_attempt_and_the_roles_it_needs() {
        let member = subject(&[Role::Member]);
        let refused = |action, object| authorize(&member, action, object).unwrap_err();
        let workspace = Object { resource: Resource::Workspace, owner: Some(OTHER) };
        let read = refused(Action::Read, workspace);
        assert_eq!(read.attempt, "read another user's workspace");
        assert_eq!(read.needs_sentence(), "It needs the template-admin or owner role.");
        let create = refused(Action::Create, Object::any(Resource::User));
        assert_eq!(create.to_string(), "you may not create users");
        assert_eq!(create.needs_sentence(), "It needs the owner role.");
        assert_eq!(refused(Action::Delete, Object::user(ME)).attempt, "delete your account");
        assert_eq!(refused(Action::Update, Object::user(OTHER)).attempt, "update other users");
        let nobody = authorize(&subject(&[]), Action::Read, Object::user(ME)).unwrap_err();
        assert_eq!(nobody.needs_sentence(), "It needs the member, template-admin or owner role.");
        assert_eq!(read.attempting("read prebuild status").to_string(), "you may not read prebuild status");
    }

    #[test]
    fn visibility_of_users() {
        assert_eq!(visibility(&subject(&[Role::Member]), Action::Read, Resource::User), Visibility::OwnedBy(ME));
        assert_eq!(
            visibility(&subject(&[Role::TemplateAdmin, Role::Member]), Action::Read, Resource::User),
            Visibility::All
        );
        assert_eq!(visibility(&subject(&[]), Action::Read, Resource::User), Visibility::Nothing);
    }

    #[test]
    fn roles_parse_and_print() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(serde_json::to_string(&role).unwrap(), format!("\"{role}\""));
        }
        assert!("admin".parse::<Role>().is_err());
    }

    fn roles() -> impl Strategy<Value = Vec<Role>> {
        proptest::sample::subsequence(Role::ALL.to_vec(), 0..=3)
    }
    fn action() -> impl Strategy<Value = Action> {
        proptest::sample::select(Action::ALL.to_vec())
    }
    fn resource() -> impl Strategy<Value = Resource> {
        proptest::sample::select(Resource::ALL.to_vec())
    }
    fn owner() -> impl Strategy<Value = Option<Uuid>> {
        prop_oneof![Just(None), Just(Some(ME)), Just(Some(OTHER))]
    }

    proptest! {
        /// Holding more roles never takes a permission away.
        #[test]
        fn more_roles_never_less_power(a in roles(), b in roles(), action in action(), resource in resource(), owner in owner()) {
            let object = Object { resource, owner };
            let mut both = a.clone();
            both.extend(b);
            if authorize(&subject(&a), action, object).is_ok() {
                prop_assert!(authorize(&subject(&both), action, object).is_ok());
            }
        }

        /// A listing's visibility agrees with asking object by object.
        #[test]
        fn visibility_agrees_with_authorize(roles in roles(), action in action(), resource in resource(), owner in owner()) {
            let s = subject(&roles);
            let visible = match visibility(&s, action, resource) {
                Visibility::All => true,
                Visibility::OwnedBy(id) => owner == Some(id),
                Visibility::Nothing => false,
            };
            prop_assert_eq!(visible, authorize(&s, action, Object { resource, owner }).is_ok());
        }

        /// Without the owner role nobody touches another user's account or creates users.
        #[test]
        fn only_owners_manage_users(roles in roles(), action in action()) {
            let s = subject(&roles);
            let other_user = authorize(&s, action, Object::user(OTHER)).is_ok();
            let allowed_for_non_owner = action == Action::Read && roles.contains(&Role::TemplateAdmin);
            if !roles.contains(&Role::Owner) {
                prop_assert_eq!(other_user, allowed_for_non_owner);
                prop_assert!(authorize(&s, Action::Create, Object::any(Resource::User)).is_err());
            } else {
                prop_assert!(other_user);
            }
        }
    }
}
