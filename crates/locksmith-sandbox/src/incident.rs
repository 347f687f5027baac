//! The incident's database, staged on a throwaway cluster: the
//! `academic_partners` table with 250 rows, and an `app` role for the
//! simulated web application (not a superuser, so the superuser's reserved
//! connection slots stay free for diagnosis, as on a real server).

use locksmith_pg::ConnectionSettings;

use crate::{Cluster, Error};

/// The table from the story.
pub const TABLE: &str = "academic_partners";
/// The migration that took production down.
pub const MIGRATION: &str =
    "ALTER TABLE academic_partners ADD CONSTRAINT unique_informal_name_academic_partner UNIQUE (informal_name)";
/// The application's role and password.
pub const APP_ROLE: (&str, &str) = ("app", "app-password");

/// Connection settings for the staged incident.
#[derive(Debug, Clone)]
pub struct Incident {
    /// The database as the superuser (the migration's and diagnosis' view).
    pub admin: ConnectionSettings,
    /// The database as the web application.
    pub app: ConnectionSettings,
    /// A URL for the database as the superuser (with the password: hand it to programs, never print it).
    pub url: String,
}

impl Incident {
    /// Creates the database `name` with the table, its 250 rows and the app role.
    pub async fn stage(cluster: &Cluster, name: &str) -> Result<Incident, Error> {
        let admin = cluster
            .create_database(name)
            .await?
            .with_application_name("locksmith-demo-setup");
        let client = admin.connect().await?;
        let (role, password) = APP_ROLE;
        let sql = format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                 CREATE ROLE {role} LOGIN PASSWORD '{password}';
               END IF;
             -- Roles are cluster-wide: another database's staging may have just made it.
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
             END $$;
             CREATE TABLE academic_partners (
               id serial PRIMARY KEY,
               name text NOT NULL,
               informal_name text NOT NULL,
               created_at timestamptz NOT NULL DEFAULT now()
             );
             INSERT INTO academic_partners (name, informal_name)
               SELECT 'University ' || i, 'uni-' || i FROM generate_series(1, 250) AS i;
             GRANT SELECT, INSERT, UPDATE, DELETE ON academic_partners TO {role};
             GRANT USAGE ON SEQUENCE academic_partners_id_seq TO {role};
             ANALYZE academic_partners;"
        );
        client.batch_execute(&sql).await.map_err(|e| Error::Sql {
            context: "staging the incident's table".into(),
            source: e,
        })?;
        let app = ConnectionSettings::loopback(cluster.port(), role, password, name, "web-app");
        Ok(Incident {
            admin: admin.with_application_name("locksmith"),
            app,
            url: cluster.url(name),
        })
    }

    /// Stages the incident in a fresh database of the process-wide cluster
    /// ([`crate::shared`]), for tests that need no server of their own.
    pub async fn stage_shared(hint: &str) -> Result<Incident, Error> {
        let cluster = crate::shared::cluster()?;
        let name = crate::shared::unique_name(hint);
        Incident::stage(cluster, &name).await
    }
}
