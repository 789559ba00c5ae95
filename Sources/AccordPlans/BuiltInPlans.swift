extension Plan {
    public static func builtIn(_ name: String) -> Plan? {
        switch name {
        case "ae5": return ae5
        case "ae5-repos": return ae5Repos
        default: return nil
        }
    }

    static let defaultTimeouts = Timeouts(scaleSeconds: 300, runningSeconds: 600, pollSeconds: 2)

    /// The whole cluster, as the original tool backed it up (ARCHITECTURE.md, "The AE5 plan").
    public static let ae5 = Plan(
        name: "ae5",
        description: "Anaconda Enterprise 5: PostgreSQL (pg_dumpall), Gravity backup, storage tree, secrets, platform configmap, ingress",
        kubectl: "kubectl",
        gravity: "gravity",
        namespace: "default",
        postgres: Postgres(deployment: "anaconda-enterprise-postgres", user: "postgres"),
        storage: Storage(root: "/opt/anaconda/storage",
                         excludes: ["/opt/anaconda/storage/pgdata", "/opt/anaconda/storage/object/anaconda-repository"],
                         replace: ["git", "pgdata", "object/anaconda-objects", "object/anaconda-projects"]),
        dumps: [
            Dump(path: "/postgres/pg_dumpall.sql",
                 command: "{kubectl} exec -n {namespace} deploy/{postgres} -- pg_dumpall -U {pguser} --clean --if-exists",
                 restore: "{kubectl} exec -i -n {namespace} deploy/{postgres} -- psql -U {pguser} -d postgres -v ON_ERROR_STOP=1 -q",
                 dropLines: ["DROP ROLE IF EXISTS {pguser};", "CREATE ROLE {pguser};"],
                 profile: "dump"),
            Dump(path: "/gravity/gravity-backup.tar.gz",
                 command: "f=$(mktemp) && {gravity} backup \"$f\" >&2 && cat \"$f\"; rc=$?; rm -f \"$f\"; exit $rc",
                 restore: nil, dropLines: nil, profile: "tree"),
        ],
        objects: [
            Objects(kind: "secret", namespace: "kube-system", names: ["cluster-tls"]),
            Objects(kind: "secret", namespace: "default", names: ["anaconda-enterprise-certs"], method: "replace"),
            Objects(kind: "secret", namespace: "default", names: ["anaconda-config-files"]),
            Objects(kind: "secret", namespace: "default", nameContains: "anaconda-credentials-user"),
            Objects(kind: "configmap", namespace: "default", names: ["anaconda-enterprise-anaconda-platform.yml"], restoreWhen: "config"),
            Objects(kind: "ingress", namespace: "default", excludePrefixes: ["anaconda-session-ingress-", "anaconda-app-ingress-"], restoreWhen: "ingress"),
        ],
        restoreSteps: knownSteps,
        cleanupSQL: [CleanupSQL(database: "anaconda_workspace", sql: "delete from sessions"),
                     CleanupSQL(database: "anaconda_deploy", sql: "truncate deployments cascade")],
        deleteDeploymentPrefixes: ["anaconda-app-", "anaconda-session-"],
        timeouts: defaultTimeouts)

    /// `--repos-only`: the package repository's database and object tree.
    public static let ae5Repos = Plan(
        name: "ae5-repos",
        description: "Anaconda Enterprise 5 package repository: pg_dump of anaconda_repository and its object tree",
        kubectl: "kubectl",
        gravity: "gravity",
        namespace: "default",
        postgres: Postgres(deployment: "anaconda-enterprise-postgres", user: "postgres"),
        storage: Storage(root: "/opt/anaconda/storage/object/anaconda-repository", excludes: [], replace: ["."]),
        dumps: [
            Dump(path: "/postgres/anaconda_repository.dump",
                 command: "{kubectl} exec -n {namespace} deploy/{postgres} -- pg_dump -U {pguser} -Fc -Z0 anaconda_repository",
                 restore: "{kubectl} exec -i -n {namespace} deploy/{postgres} -- pg_restore -U {pguser} --clean --if-exists -d anaconda_repository",
                 dropLines: nil, profile: "dump"),
        ],
        objects: [],
        restoreSteps: ["check-marker", "pre-restore-snapshot", "replace-storage", "load-dumps", "remove-marker"],
        cleanupSQL: [],
        deleteDeploymentPrefixes: [],
        timeouts: defaultTimeouts)
}

