//! Users: the first user, logging in and out, listing and creating users.

use uuid::Uuid;
use warmspace_authz::{Action, Object, Resource, Role, Visibility};
use warmspace_sdk::{
    CreateFirstUserRequest, CreateFirstUserResponse, CreateUserRequest, GetUsersResponse, LoginType,
    LoginWithPasswordRequest, LoginWithPasswordResponse, User, UserStatus, UsersQuery, ValidationError,
};
use warmspace_store::{NewSession, NewUser, StoreError, UserFilter, UserRow};

use super::views::user_view;
use super::{Actor, Domain, Error, Found, Result, page};
use crate::auth::passwords;
use crate::auth::tokens::Token;

impl Domain {
    pub async fn first_user_exists(&self) -> Result<bool> {
        Ok(self.store.human_user_exists().await?)
    }

    /// Creates the first user, an owner. Refused once any human user exists.
    pub async fn create_first_user(&self, req: CreateFirstUserRequest) -> Result<CreateFirstUserResponse> {
        let mut problems = validate_identity(&req.username, &req.email, &req.name);
        problems.extend(validate_password(Some(&req.password), LoginType::Password));
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        let user = NewUser {
            username: req.username,
            email: req.email,
            name: req.name,
            login_type: LoginType::Password,
            hashed_password: Some(hash(req.password).await?),
            status: UserStatus::Active,
            roles: vec![Role::Owner],
        };
        let Some(user) = self.store.create_first_user(user).await? else {
            return Err(Error::conflict("The first user has already been created."));
        };
        tracing::info!(user = %user.username, "first user created");
        let organization_id = user.organization_ids.first().copied().unwrap_or_default();
        Ok(CreateFirstUserResponse { user_id: user.id, organization_id })
    }

    /// Exchanges an email and password for a session token.
    pub async fn login(&self, req: LoginWithPasswordRequest) -> Result<LoginWithPasswordResponse> {
        let problems: Vec<ValidationError> = [("email", &req.email), ("password", &req.password)]
            .into_iter()
            .filter(|(_, value)| value.is_empty())
            .map(|(field, _)| invalid(field, "is required"))
            .collect();
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        let user = match self.store.user_by_email(&req.email).await {
            Ok(user) => Some(user),
            Err(StoreError::NotFound) => None,
            Err(err) => return Err(err.into()),
        };
        let hashed = user.as_ref().and_then(|u| u.hashed_password.clone());
        // Unknown users, system users and `none` logins have no hash, so
        // they fail here like a wrong password, after the same work.
        let verified = passwords::verify(req.password, hashed).await;
        let Some(user) = user.filter(|_| verified) else {
            return Err(Error::unauthenticated("Incorrect email or password."));
        };
        if user.status != UserStatus::Active {
            return Err(Error::unauthenticated("Your account is suspended.").detail("Ask an owner to reactivate it."));
        }
        let token = Token::generate();
        let expires_at = self.now() + self.config.session_duration;
        self.store
            .create_session(&NewSession {
                id: token.id.clone(),
                hashed_secret: token.hashed_secret(),
                user_id: user.id,
                login_type: "password",
                expires_at,
            })
            .await?;
        self.store.touch_last_seen(user.id).await?;
        Ok(LoginWithPasswordResponse { session_token: token.to_header_value(), expires_at })
    }

    /// Ends the session the actor authenticated with.
    pub async fn logout(&self, actor: &Actor) -> Result<()> {
        Ok(self.store.delete_session(&actor.session_id).await?)
    }

    /// Users the actor may see: everyone for owners and template admins,
    /// themselves for members. System users only when asked for.
    pub async fn list_users(&self, actor: &Actor, query: UsersQuery) -> Result<GetUsersResponse> {
        let mut filter = parse_search(query.q.as_deref().unwrap_or_default())?;
        filter.include_system = query.include_system;
        (filter.limit, filter.offset) = page(query.limit, query.offset)?;
        match warmspace_authz::visibility(&actor.subject, Action::Read, Resource::User) {
            Visibility::All => {}
            Visibility::OwnedBy(id) => filter.only = Some(id),
            Visibility::Nothing => actor.authorize(Action::Read, Object::any(Resource::User))?,
        }
        let (rows, count) = self.store.list_users(&filter).await?;
        Ok(GetUsersResponse { users: rows.into_iter().map(user_view).collect(), count })
    }

    /// Whether the actor sees every user in [`Self::list_users`] (owners and
    /// template admins), rather than only themselves.
    pub fn may_see_all_users(&self, actor: &Actor) -> bool {
        warmspace_authz::visibility(&actor.subject, Action::Read, Resource::User) == Visibility::All
    }

    /// Whether the actor may create users and change them (owners).
    pub fn may_manage_users(&self, actor: &Actor) -> bool {
        actor.authorize(Action::Update, Object::any(Resource::User)).is_ok()
    }

    /// Creates a user. Owners only.
    pub async fn create_user(&self, actor: &Actor, req: CreateUserRequest) -> Result<User> {
        actor.authorize(Action::Create, Object::any(Resource::User))?;
        let mut problems = validate_identity(&req.username, &req.email, &req.name);
        problems.extend(validate_password(req.password.as_deref(), req.login_type));
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        let hashed_password = match req.password {
            Some(password) => Some(hash(password).await?),
            None => None,
        };
        let user = self
            .store
            .create_user(NewUser {
                username: req.username,
                email: req.email,
                name: req.name,
                login_type: req.login_type,
                hashed_password,
                status: req.status,
                roles: req.roles,
            })
            .await?;
        tracing::info!(user = %user.username, by = %actor.user.username, "user created");
        Ok(user_view(user))
    }

    /// One user, by id, username, or `me`.
    pub async fn user(&self, actor: &Actor, user: &str) -> Result<User> {
        let row = self.find_user(actor, user).await?;
        actor.authorize(Action::Read, Object::user(row.id))?;
        Ok(user_view(row))
    }

    /// Sets the IANA zone a user's autostop requirement and zone-less
    /// autostart schedules are read in: one's own, or anyone's for those
    /// who may update users.
    pub async fn set_user_timezone(&self, actor: &Actor, user: &str, timezone: &str) -> Result<User> {
        let row = self.find_user(actor, user).await?;
        if row.id != actor.user.id {
            actor.authorize(Action::Update, Object::user(row.id))?;
        }
        if row.is_system {
            return Err(Error::conflict("System users have no schedules."));
        }
        let zone: chrono_tz::Tz = timezone.parse().map_err(|_| {
            Error::field("timezone", format!("{timezone:?} is not an IANA time zone (e.g. Europe/Berlin)"))
        })?;
        Ok(user_view(self.store.set_user_timezone(row.id, zone.name()).await?))
    }

    /// Suspends a user (they can no longer sign in, and their sessions stop
    /// working) or reactivates them. Owners only; never oneself, never a
    /// system user.
    pub async fn set_user_status(&self, actor: &Actor, user: &str, status: UserStatus) -> Result<User> {
        let row = self
            .user_to_administer(actor, user, "You cannot suspend or reactivate yourself.", "suspend or reactivate")
            .await?;
        let updated = self.store.set_user_status(row.id, status).await?;
        tracing::info!(user = %updated.username, %status, by = %actor.user.username, "user status changed");
        Ok(user_view(updated))
    }

    /// Replaces a user's granted roles (`member` is implied). Owners only;
    /// never one's own (an owner cannot lock the site out of its last owner
    /// by accident), never a system user's.
    pub async fn set_user_roles(&self, actor: &Actor, user: &str, roles: Vec<Role>) -> Result<User> {
        let row =
            self.user_to_administer(actor, user, "You cannot change your own roles.", "change the roles of").await?;
        let updated = self.store.set_user_roles(row.id, &roles).await?;
        tracing::info!(user = %updated.username, ?roles, by = %actor.user.username, "user roles changed");
        Ok(user_view(updated))
    }

    /// A user whom the actor may update, other than the actor and not a system user.
    async fn user_to_administer(&self, actor: &Actor, user: &str, not_self: &str, what: &str) -> Result<UserRow> {
        let row = self.find_user(actor, user).await?;
        actor.authorize(Action::Update, Object::user(row.id))?;
        if row.id == actor.user.id {
            return Err(Error::conflict(not_self).detail("Ask another owner to do it."));
        }
        if row.is_system {
            return Err(Error::conflict(format!("You cannot {what} a system user.")));
        }
        Ok(row)
    }

    /// A user by id, username, or `me` (not found when there is none).
    pub(super) async fn find_user(&self, actor: &Actor, user: &str) -> Result<UserRow> {
        if user == "me" {
            return Ok(actor.user.clone());
        }
        match Uuid::parse_str(user) {
            Ok(id) => self.store.user_by_id(id).await,
            Err(_) => self.store.user_by_username(user).await,
        }
        .found(format!("User {user:?}"))
    }
}

async fn hash(password: String) -> Result<String> {
    passwords::hash(password).await.map_err(Error::internal)
}

pub(super) fn invalid(field: &str, detail: impl Into<String>) -> ValidationError {
    ValidationError { field: field.into(), detail: detail.into() }
}

fn validate_identity(username: &str, email: &str, name: &str) -> Vec<ValidationError> {
    let mut problems = Vec::new();
    let username_ok = (1..=32).contains(&username.len())
        && username.split('-').all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric()));
    if !username_ok {
        problems.push(invalid(
            "username",
            "must be 1 to 32 letters or digits, with single hyphens between them (no leading or trailing hyphen)",
        ));
    }
    let email_ok = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.split('.').count() >= 2
                && domain.split('.').all(|label| !label.is_empty())
        });
    if !email_ok {
        problems.push(invalid("email", "must be an email address such as alice@example.com"));
    }
    if name.chars().count() > 128 {
        problems.push(invalid("name", "must be at most 128 characters"));
    }
    problems
}

fn validate_password(password: Option<&str>, login_type: LoginType) -> Vec<ValidationError> {
    let (min, max) = (passwords::MIN_LENGTH, passwords::MAX_LENGTH);
    match (login_type, password) {
        (LoginType::Password, None) => vec![invalid("password", "is required for login_type password")],
        (LoginType::Password, Some(p)) if !(min..=max).contains(&p.chars().count()) => {
            vec![invalid("password", format!("must be {min} to {max} characters"))]
        }
        (LoginType::None, Some(_)) => vec![invalid("password", "must not be set for login_type none")],
        _ => vec![],
    }
}

/// Parses `GET /users?q=`: `key:value` terms filter, other words search
/// usernames, emails and names.
fn parse_search(q: &str) -> Result<UserFilter> {
    let mut filter = UserFilter::default();
    let mut words = Vec::new();
    for term in q.split_whitespace() {
        let Some((key, value)) = term.split_once(':') else {
            words.push(term);
            continue;
        };
        // Each problem names the term it is in: a query can hold several.
        let bad = |problem: String| Error::field("q", format!("{term:?}: {problem}"));
        let given_twice = match key {
            "login_type" => {
                let login_type = value.parse().map_err(|_| bad("expected password or none".into()))?;
                filter.login_type.replace(login_type).is_some()
            }
            "status" => {
                let status = value.parse().map_err(|_| bad("expected active or suspended".into()))?;
                filter.status.replace(status).is_some()
            }
            "role" => {
                let role = value.parse::<Role>().map_err(|e| bad(e.to_string()))?;
                filter.role.replace(role).is_some()
            }
            _ => return Err(bad(format!("unknown filter {key:?} (expected login_type, status or role)"))),
        };
        if given_twice {
            return Err(bad(format!("{key} is given twice")));
        }
    }
    if !words.is_empty() {
        filter.text = Some(words.join(" "));
    }
    Ok(filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_terms() {
        let f = parse_search("status:active  role:template-admin ali").unwrap();
        assert_eq!(f.status, Some(UserStatus::Active));
        assert_eq!(f.role, Some(Role::TemplateAdmin));
        assert_eq!(f.text.as_deref(), Some("ali"));
        assert!(parse_search("").unwrap().text.is_none());
        for bad in ["status:gone", "login_type:oidc", "role:admin", "colour:red", "status:active status:active"] {
            match parse_search(bad) {
                Err(Error::Invalid(problems)) => assert_eq!(problems[0].field, "q", "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn identities() {
        assert!(validate_identity("alice-b2", "a@b.co", "").is_empty());
        fn fields(u: &str, e: &str, n: &str) -> Vec<String> {
            validate_identity(u, e, n).into_iter().map(|v| v.field).collect()
        }
        assert_eq!(fields("-alice", "a@b.co", ""), ["username"]);
        assert_eq!(fields("al--ice", "a@b.co", ""), ["username"]);
        assert_eq!(fields("al_ice", "a@b.co", ""), ["username"]);
        assert_eq!(fields(&"a".repeat(33), "a@b.co", ""), ["username"]);
        assert_eq!(fields("alice", "a@b", ""), ["email"]);
        assert_eq!(fields("alice", "a b@c.d", ""), ["email"]);
        assert_eq!(fields("alice", "@c.d", ""), ["email"]);
        assert_eq!(fields("alice", "a@b.co", &"n".repeat(129)), ["name"]);
    }
}
