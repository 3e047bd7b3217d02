package main

// commandTree returns the commands coffer understands. Each leaf makes one RPC
// (list and versions repeat theirs to follow pages). Secrets reads and writes
// say so in index, which gives them --show-index and, for reads, the read
// flags.
func commandTree() *command {
	policy := group("policy", "Manage a secret's resource-based policy",
		"Get, attach, remove or check a secret's resource-based (IAM JSON) policy.",
		&command{
			name: "get", synopsis: "ID", run: runPolicyGet, index: readIndex,
			summary: "Show a secret's resource policy",
		},
		&command{
			name: "put", synopsis: "ID (--file F | --policy JSON) [--block-public-policy=true|false]", run: runPolicyPut, index: writeIndex,
			summary: "Attach a resource policy to a secret",
			detail:  "Attaches the policy, replacing any previous one. With --block-public-policy the server\nrefuses a policy that grants broad access (off by default, as in AWS).",
		},
		&command{
			name: "delete", synopsis: "ID", run: runPolicyDelete, index: writeIndex,
			summary: "Remove a secret's resource policy",
		},
		&command{
			name: "validate", synopsis: "[ID] (--file F | --policy JSON)", run: runPolicyValidate,
			summary: "Check a policy document without attaching it",
			detail:  "Prints the checks that failed. Exits 0 when the policy passes and 5 when it does not.",
		},
	)
	secrets := group("secrets", "Create, read and manage secrets",
		"Each command calls one Secrets Manager operation. ID is a secret's name or ARN.",
		&command{
			name: "create", synopsis: "NAME [--value V | --value-file F | --binary-file F] [--description D] [--kms-key-id K] [--tag k=v]... [--token T]", run: runCreate, index: writeIndex,
			summary: "Create a secret, with a first version when a value is given",
		},
		&command{
			name: "get", synopsis: "ID [--version-id V] [--stage S] [--value-only]", run: runGet, index: readIndex,
			summary: "Show a secret's value",
			detail:  "Shows the AWSCURRENT version unless --version-id or --stage selects another.\nWith --value-only, prints only the value: the text and a newline, or the raw\nbytes of a binary secret (whatever -o says).",
		},
		&command{
			name: "put", synopsis: "ID (--value V | --value-file F | --binary-file F) [--stage S]... [--token T]", run: runPut, index: writeIndex,
			summary: "Store a new version of a secret's value",
			detail:  "The new version gets the labels given by --stage, or AWSCURRENT when none is given.",
		},
		&command{
			name: "update", synopsis: "ID [--description D] [--kms-key-id K] [--value V | --value-file F | --binary-file F] [--token T]", run: runUpdate, index: writeIndex,
			summary: "Change a secret's description, KMS key or value",
			detail:  "Only what is given changes: --description \"\" clears the description, and leaving\nthe flag out keeps it.",
		},
		&command{
			name: "describe", synopsis: "ID", run: runDescribe, index: readIndex,
			summary: "Show a secret's metadata (never its value)",
		},
		&command{
			name: "list", synopsis: "[--filter key=value]... [--include-deleted] [--sort-by F] [--sort-order asc|desc] [--page-size N]", run: runList, index: readIndex,
			summary: "List secrets, following all pages",
			detail:  "Filter keys are description, name, tag-key, tag-value, primary-region, owning-service\nand all; values are prefixes, and a leading ! negates one. A secret matches when every\nkey matches; repeating a key adds values, any of which may match.",
		},
		&command{
			name: "versions", synopsis: "ID [--include-deprecated]", run: runVersions, index: readIndex,
			summary: "List a secret's versions, following all pages",
		},
		&command{
			name: "label", synopsis: "ID STAGE [--move-to V] [--remove-from V]", run: runLabel, index: writeIndex,
			summary: "Move a staging label to another version, or remove it",
			detail:  "Moving a label that is on a version needs --remove-from with that version's id.\nGive --remove-from alone to take the label off.",
		},
		&command{
			name: "delete", synopsis: "ID [--recovery-window-days N] [--force]", run: runDelete, index: writeIndex,
			summary: "Schedule a secret for deletion, or delete it now with --force",
			detail:  "Without --force the secret can be restored until the recovery window\n(30 days unless --recovery-window-days says 7-30) ends.",
		},
		&command{
			name: "restore", synopsis: "ID", run: runRestore, index: writeIndex,
			summary: "Cancel a scheduled deletion",
		},
		&command{
			name: "tag", synopsis: "ID KEY=VALUE...", run: runTag, index: writeIndex,
			summary: "Add or overwrite tags",
		},
		&command{
			name: "replicate", synopsis: "ID REGION[=KMS_KEY]... [--force-overwrite-replica]", run: runReplicate, index: writeIndex,
			summary: "Replicate a secret to other (paired) regions",
			detail:  "Each replica is a read-only copy with the replica region's ARN, encrypted under\nthat region's KMS key (KMS_KEY there, or its default key).",
		},
		&command{
			name: "remove-regions", synopsis: "ID REGION...", run: runRemoveRegions, index: writeIndex,
			summary: "Delete a secret's replicas in the given regions",
		},
		&command{
			name: "stop-replication", synopsis: "ID", run: runStopReplication, index: writeIndex,
			summary: "Promote a replica (in this region) to a standalone primary",
		},
		&command{
			name: "untag", synopsis: "ID KEY...", run: runUntag, index: writeIndex,
			summary: "Remove tags",
		},
		&command{
			name: "rotate", synopsis: "ID [--function F] [--days N | --schedule EXPR] [--duration Nh] [--rotate-immediately=true|false] [--token T]", run: runRotate, index: writeIndex,
			summary: "Turn on rotation and start one (RotateSecret)",
			detail: "Stores the function and schedule, then starts a rotation that the region leader runs\n" +
				"in the background: createSecret, setSecret, testSecret, finishSecret. Without\n" +
				"--function the stored one is used. --rotate-immediately=false only tests the\n" +
				"function (testSecret). Follow the rotation with describe. A secret whose last\n" +
				"rotation has not finished refuses another.",
		},
		&command{
			name: "cancel-rotation", synopsis: "ID", run: runCancelRotation, index: writeIndex,
			summary: "Turn rotation off (CancelRotateSecret)",
			detail:  "A rotation in progress is abandoned: VersionId names its AWSPENDING version,\nwhich is left for you to inspect and remove, as AWS leaves it.",
		},
		policy,
		&command{
			name: "random-password", synopsis: "[--length N] [--exclude-characters S] [--exclude-numbers] [--exclude-punctuation] [--exclude-uppercase] [--exclude-lowercase] [--include-space] [--require-each-included-type=true|false]", run: runRandomPassword,
			summary: "Generate a random password (stores nothing)",
			detail:  "Table output is only the password and a newline, so that\nPW=$(coffer secrets random-password) works.",
		},
	)
	snapshot := group("snapshot", "Back up or restore the region's whole state",
		"A snapshot holds the region's whole replicated state at one log index.",
		&command{
			name: "save", synopsis: "FILE [--progress]", run: runSnapshotSave,
			summary: "Download a snapshot to FILE (- for stdout)",
			detail: "Writes FILE.part, syncs it and renames it to FILE only when every byte the\n" +
				"server announced has arrived, so FILE is never a truncated snapshot. Progress\n" +
				"shows on stderr when it is a terminal, or with --progress. --timeout bounds\n" +
				"each wait for data, not the whole download.",
		},
		&command{
			name: "restore", synopsis: "FILE --yes [--progress]", run: runSnapshotRestore,
			summary: "Replace the region's state with a snapshot",
			detail: "Uploads FILE and replaces the WHOLE state of the region, on every node, with\n" +
				"it: secrets written since the snapshot are lost. --yes is required. Progress\n" +
				"shows on stderr when it is a terminal, or with --progress. --timeout bounds\n" +
				"each wait for the server, not the whole upload.",
		},
	)
	cluster := group("cluster", "Inspect and operate the region's Raft cluster",
		"Each command calls one AdminService operation. Any node answers; it forwards\nwhat only the leader can do.",
		&command{
			name: "status", synopsis: "", run: runClusterStatus,
			summary: "Show the leader and every server's Raft progress",
		},
		&command{
			name: "check", synopsis: "", run: runClusterCheck,
			summary: "Check that every server's state is the same, now",
			detail: "The leader commits a check point; every server hashes its state as of that index\n" +
				"and the leader compares the hashes. A server whose hash differs from the majority's is\n" +
				"marked diverged: it stops serving requests until it is resynced (docs/OPERATIONS.md).\n" +
				"A server marked before whose hash matches again is cleared. Exits 1 unless every\n" +
				"server matched.",
		},
		&command{
			name: "members", synopsis: "", run: runClusterMembers,
			summary: "List the nodes of the gossip pool",
		},
		&command{
			name: "remove-peer", synopsis: "NODE_ID", run: runRemovePeer,
			summary: "Remove a server from the Raft configuration",
		},
		&command{
			name: "transfer-leader", synopsis: "[NODE_ID]", run: runTransferLeader,
			summary: "Hand leadership to another voter",
			detail:  "Without NODE_ID, Raft picks the most up-to-date voter.",
		},
		snapshot,
	)
	iam := group("iam", "Manage principals, access keys, temporary credentials and policies",
		"Principals are who may call Coffer; each authenticates with an access key (every\ncall signed with SigV4, on gRPC as on the AWS API), temporary credentials from\nsession-token, or a client certificate the server maps to it. What a principal may do\nis decided by the identity policies attached to it and the secrets' resource policies:\nan explicit Deny wins, then any Allow; otherwise access is denied. root may do everything.",
		&command{
			name: "create-principal", synopsis: "NAME [--description D] [--tag k=v]...", run: runIAMCreatePrincipal,
			summary: "Create a principal",
		},
		&command{
			name: "create-access-key", synopsis: "PRINCIPAL", run: runIAMCreateAccessKey,
			summary: "Create an access key; its secret is shown only once",
		},
		&command{
			name: "list", synopsis: "", run: runIAMList,
			summary: "List principals, their access key ids and policies",
		},
		&command{
			name: "delete", synopsis: "NAME | --access-key KEY_ID", run: runIAMDelete,
			summary: "Delete a principal (and its keys) or one access key (and its sessions)",
		},
		&command{
			name: "put-policy", synopsis: "NAME --file F | --policy JSON [--description D]", run: runIAMPutPolicy,
			summary: "Create or replace an identity policy",
			detail:  "IAM JSON: Version, Statement[] with Sid, Effect, Action/NotAction (secretsmanager:*,\ncoffer:SaveSnapshot…), Resource/NotResource and Condition. Identity policies name no\nPrincipal. A malformed document is refused with MalformedPolicyDocumentException.",
		},
		&command{
			name: "get-policy", synopsis: "NAME", run: runIAMGetPolicy,
			summary: "Show a policy, its document and who it is attached to",
		},
		&command{
			name: "list-policies", synopsis: "", run: runIAMListPolicies,
			summary: "List policies",
		},
		&command{
			name: "delete-policy", synopsis: "NAME", run: runIAMDeletePolicy,
			summary: "Delete a policy attached to no one",
		},
		&command{
			name: "attach", synopsis: "PRINCIPAL POLICY", run: runIAMAttach,
			summary: "Attach a policy to a principal",
		},
		&command{
			name: "detach", synopsis: "PRINCIPAL POLICY", run: runIAMDetach,
			summary: "Detach a policy from a principal",
		},
		&command{
			name: "simulate", synopsis: "PRINCIPAL ACTION RESOURCE [--context k=v]...", run: runIAMSimulate,
			summary: "Say whether PRINCIPAL may do ACTION on RESOURCE, and which statement decided",
			detail:  "RESOURCE is a secret's name or ARN (its resource policy and tags count), another\nARN, or *. --context sets condition keys such as aws:SourceIp.",
		},
		&command{
			name: "session-token", synopsis: "[--duration D] [--env]", run: runIAMSessionToken,
			summary: "Exchange your access key for temporary credentials",
			detail:  "The credentials work with SigV4 (AWS_SESSION_TOKEN / X-Amz-Security-Token; for coffer,\nCOFFER_SESSION_TOKEN). They stop working at their expiration\nor when the access key they came from is deleted. --env prints export lines.",
		},
		&command{
			name: "whoami", synopsis: "", run: runIAMWhoami,
			summary: "Show who the server takes you for",
		},
		&command{
			name: "create-role", synopsis: "NAME --file F | --policy JSON [--description D] [--max-session-duration D]", run: runIAMCreateRole,
			summary: "Create a role; the document is its trust policy",
			detail: "The trust policy names who may assume the role: Principal {\"AWS\": \"arn:aws:iam::ACCOUNT:user/app\"}\n" +
				"with Action sts:AssumeRole (the caller also needs sts:AssumeRole on the role in its own\n" +
				"policies), or {\"Federated\": \"arn:aws:iam::ACCOUNT:oidc-provider/ISSUER\"} with Action\n" +
				"sts:AssumeRoleWithWebIdentity and conditions on ISSUER:sub and ISSUER:aud. No Resource.",
		},
		&command{
			name: "put-trust-policy", synopsis: "ROLE --file F | --policy JSON", run: runIAMPutTrustPolicy,
			summary: "Replace a role's trust policy",
		},
		&command{
			name: "get-role", synopsis: "NAME", run: runIAMGetRole,
			summary: "Show a role, its trust policy and policies",
		},
		&command{
			name: "list-roles", synopsis: "", run: runIAMListRoles,
			summary: "List roles",
		},
		&command{
			name: "delete-role", synopsis: "NAME", run: runIAMDeleteRole,
			summary: "Delete a role with no policy attached, revoking its sessions",
		},
		&command{
			name: "attach-role", synopsis: "ROLE POLICY", run: runIAMAttachRole,
			summary: "Attach a policy to a role",
		},
		&command{
			name: "detach-role", synopsis: "ROLE POLICY", run: runIAMDetachRole,
			summary: "Detach a policy from a role",
		},
		&command{
			name: "assume-role", synopsis: "ROLE_ARN SESSION_NAME [--duration D] [--env]", run: runIAMAssumeRole,
			summary: "Assume a role: temporary credentials carrying its policies",
		},
	)
	rotation := group("rotation", "Manage HTTP rotation functions",
		"A rotation function receives each rotation step as the AWS Lambda event JSON,\nPOSTed to its URL. A secret's RotationLambdaARN names one by name or ARN; the\nbuilt-in rotators (coffer:rotator/...) need no registration.",
		&command{
			name: "register-function", synopsis: "NAME URL (--secret-file F | --secret S) [--insecure-http]", run: runRegisterFunction,
			summary: "Register (or replace) an HTTP rotation function",
			detail: "Every request carries X-Coffer-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256\n" +
				"of \"<t>.<NAME>.<raw body>\" under the secret>; the function must check it (and\n" +
				"refuse a t older than 5 minutes) before it acts: rotation.VerifyRequest in Go.\n" +
				"The URL must be https; --insecure-http allows http to localhost or a loopback\n" +
				"address only. The secret is sealed in the region's state and never shown again.",
		},
		&command{
			name: "list-functions", synopsis: "", run: runListFunctions,
			summary: "List the built-in rotators and the registered functions",
		},
		&command{
			name: "deregister-function", synopsis: "NAME", run: runDeregisterFunction,
			summary: "Remove a registered function",
		},
	)
	region := group("region", "Regions, pairing and failover",
		"Each region is its own Raft group; paired regions replicate secrets to each other.",
		&command{
			name: "list", synopsis: "", run: runRegionList,
			summary: "List regions: leader, health, and replication lag to each",
		},
		&command{
			name: "info", synopsis: "", run: runRegionInfo,
			summary: "Show this region's name, CA fingerprint and replication addresses",
			detail: "What another region's operator needs to pair with this one: give them the CA\n" +
				"SHA-256 fingerprint over a channel you trust; they pass it as --peer-ca-sha256.",
		},
		&command{
			name: "pair", synopsis: "--peer-endpoint HOST:PORT --peer-ca-sha256 HEX [--accept-overwrite] [--peer-profile P] [--peer-credentials-file F] [--peer-tls] [--peer-ca-file F] [--peer-region R]", run: runRegionPair,
			summary: "Pair this region with another (both sides, each authenticated)",
			detail: "Exchanges the regions' cluster CA certificates (trusted only for region-to-region\n" +
				"replication), X25519 pairing public keys (from which each side derives the same\n" +
				"pairwise replication key; no secret crosses the wire) and replication addresses.\n" +
				"The other region is pinned by its CA's SHA-256 fingerprint (--peer-ca-sha256, from\n" +
				"coffer region info there): an offer with another CA is refused before either\n" +
				"region records anything. Both endpoints need TLS unless they are on loopback.\n" +
				"--accept-overwrite lets each region's ForceOverwriteReplicaSecret replace secrets\n" +
				"that are primary in the other (off by default; see set-pairing).",
		},
		&command{
			name: "set-pairing", synopsis: "REGION --accept-overwrite=true|false", run: runRegionSetPairing,
			summary: "Change this region's options for a paired region",
			detail: "--accept-overwrite=true lets REGION's replication replace a secret that is primary\n" +
				"here when its caller set ForceOverwriteReplicaSecret; false (the default at pairing)\n" +
				"refuses such records and REGION's replica status reports Failed. Who may pair or\n" +
				"change this (coffer:PairRegion, coffer:SetPairingOptions) is root-equivalent.",
		},
		&command{
			name: "unpair", synopsis: "REGION", run: runRegionUnpair,
			summary: "Forget a paired region and release the changes kept for it",
			detail: "Its certificates are no longer accepted and nothing more ships to it. Secrets\n" +
				"that still replicate to it report Failed until it is paired again (which sends\n" +
				"them in full) or removed from their replication.",
		},
		&command{
			name: "promote", synopsis: "REGION [--dry-run] [--from REGION [--planned]]", run: runRegionPromote,
			summary: "Promote every replica in REGION whose primary region is unreachable",
			detail: "Run against a node of REGION; the region leader judges reachability (a follower\n" +
				"names the leader and coffer calls it there). Each promoted secret gets a higher\n" +
				"epoch and replicates back to its old primary region (and its other paired replica\n" +
				"regions), which becomes a replica when it returns; writes it took that never\n" +
				"shipped stay there under COFFER_DIVERGED_<region>. With --from REGION --planned,\n" +
				"promotes REGION's replicas although it is reachable (a fenced region's failover).",
		},
		&command{
			name: "fence", synopsis: "REGION [--reason TEXT]", run: runRegionFence,
			summary: "Make REGION refuse writes to its primary secrets (replicated, audited)",
			detail: "Run against a node of REGION. Writes to its primary secrets, and new secrets, get a\n" +
				"retryable ServiceUnavailable until coffer region unfence; its replicas keep following\n" +
				"their primaries and it keeps shipping what it accepted. Prints what was unshipped.",
		},
		&command{
			name: "unfence", synopsis: "REGION", run: runRegionUnfence,
			summary: "Lift REGION's fence",
		},
		&command{
			name: "status", synopsis: "", run: runRegionStatus,
			summary: "Show this region's fence, switchover, secrets and unshipped changes",
		},
		&command{
			name: "switchover", synopsis: "--to REGION --to-endpoint HOST:PORT [--to-profile P] [--to-tls] [--to-ca-file F] [--abort]", run: runRegionSwitchover,
			summary: "Hand primacy of the secrets replicated to REGION over to it, losing nothing",
			detail: "Run against this (the primary) region. Its secrets replicated to REGION refuse writes\n" +
				"(retryable, naming REGION), it waits until REGION acknowledged every change (lag 0),\n" +
				"REGION promotes them (after checking it applied all of it) and this region becomes\n" +
				"their replica. RPO 0. Reversible the same way; --abort ends one that promoted nothing.",
		},
		&command{
			name: "failback", synopsis: "--to REGION --to-endpoint HOST:PORT [--to-profile P] [--to-tls] [--to-ca-file F]", run: runRegionFailback,
			summary: "After a failover, give REGION (the old primary, now a replica) its secrets back",
			detail: "Run against the current primary region. Unfences REGION if it is fenced, then\n" +
				"switches over to it once it has caught up. Versions it took that never shipped stay\n" +
				"there as diverged versions: list them with coffer region diverged.",
		},
		group("diverged", "List, adopt or discard diverged versions",
			"A region that was primary, lost its secrets to a failover and returned keeps the writes it\n"+
				"never shipped under COFFER_DIVERGED_<region> labels.",
			&command{
				name: "list", synopsis: "[--prefix P]", run: runRegionDiverged,
				summary: "List diverged versions per secret, with the commands to resolve each",
			},
			&command{
				name: "adopt", synopsis: "ID VERSION_ID", run: runDivergedResolve(true),
				summary: "Make a diverged version AWSCURRENT (where the secret is primary)",
			},
			&command{
				name: "discard", synopsis: "ID VERSION_ID", run: runDivergedResolve(false),
				summary: "Delete a diverged version (where the secret is primary)",
			},
		),
	)
	agentCmd := &command{
		name: "agent", synopsis: "[--port 2773] [--ttl D] [--max-conn N] [--token-env VARS] [--path-prefix P] [--watch=false] [--cache-dir DIR --cache-key-file FILE]", run: runAgent,
		summary: "Serve secrets on localhost as aws-secretsmanager-agent does, kept fresh by the watch",
		detail: "GET /secretsmanager/get?secretId=ID[&versionId=V][&versionStage=S][&refreshNow=true] and /v1/ID\n" +
			"answer GetSecretValue's JSON; /ping answers \"healthy\" and, as the AWS agent's, needs no token.\n" +
			"Every other request needs the SSRF token in X-Aws-Parameters-Secrets-Token (or X-Vault-Token),\n" +
			"read from AWS_TOKEN, AWS_SESSION_TOKEN or AWS_CONTAINER_AUTHORIZATION_TOKEN (file://PATH reads a\n" +
			"file). X-Forwarded-For is 400, a bad token 403, a method other than GET 405, a connection over\n" +
			"--max-conn 429. When Coffer is unreachable the last good value is served with\n" +
			"X-Coffer-Cache-Age (seconds). --cache-dir keeps every answer encrypted on disk (AES-256-GCM\n" +
			"under the key of --cache-key-file or COFFER_AGENT_CACHE_KEY, at least 32 bytes, kept outside\n" +
			"the directory), so an agent restarted while Coffer is unreachable still answers; a directory\n" +
			"written with another key is refused. --endpoint may list several nodes, comma-separated.",
	}
	execCmd := &command{
		name: "exec", synopsis: "[--env NAME=REF]... [--template IN:OUT[:MODE]]... [--restart-on-change [--signal-only] [--signal S] [--grace D]] -- COMMAND [ARG]...", run: runExec,
		summary: "Run a command with secrets in its environment and in rendered files",
		detail: "REF is SECRET[:JSON_KEY[:STAGE|VERSION]] or ECS's valueFrom ARN form\n" +
			"(arn:…:secret:NAME-XXXXXX[:JSON_KEY[:VERSION_STAGE[:VERSION_ID]]]). A missing secret or JSON key\n" +
			"fails before the command starts (--allow-missing sets \"\"). Templates are Go templates: {{.NAME}}\n" +
			"is an --env variable, {{secret \"REF\"}} reads a reference; files are written atomically.\n" +
			"Signals are forwarded; coffer exits with the command's status (128+N for signal N). With\n" +
			"--restart-on-change a change to an injected value (seen through WatchSecrets) restarts the\n" +
			"command: --signal, then SIGKILL after --grace.",
	}
	operator := group("operator", "Unseal a node sealed with key shares, or rekey them",
		"A node with the shamir seal starts sealed and serves only health and these commands\nuntil enough key shares (cofferd operator init printed them) are entered.",
		&command{
			name: "unseal", synopsis: "[SHARE | --reset]", run: runOperatorUnseal,
			summary: "Enter one key share on the node --endpoint names",
			detail:  "Without SHARE, reads it from the first line of standard input, so it stays out of the\nshell history. Prints the progress; the node serves once the threshold is reached.\nA combination that is not the root key discards every share entered.",
		},
		&command{
			name: "seal-status", run: runOperatorSealStatus,
			summary: "Show whether the node is sealed and how many shares it holds",
		},
		&command{
			name: "rekey", synopsis: "--init [--shares N] [--threshold T] [--age-recipients FILE] | --status | --nonce NONCE [--verify] --yes [SHARE] | --cancel --nonce NONCE | --key-label L", run: runOperatorRekey,
			summary: "Re-split a running node's root key into new key shares, or re-wrap it under another HSM key",
			detail: "With the current threshold of shares, as Vault's operator rekey with verification: --init starts\n" +
				"it and prints a nonce; --status shows who started it and where the new shares go; each holder\n" +
				"enters a current share with --nonce and --yes (SHARE or the first line of standard input); the\n" +
				"last one gets the new shares and a verification nonce. Nothing changes until the new threshold\n" +
				"of new shares is entered back with --verify; then the node replaces its seal.json, which must be\n" +
				"copied to the region's other nodes. The root key does not change, so no data is rewritten.\n" +
				"With --age-recipients (one age key per new share, in order) each new share is returned\n" +
				"encrypted to its key. --cancel needs the nonce. --key-label re-wraps a pkcs11 seal's root key\n" +
				"under the token's key with that label (made if absent). Needs coffer:Rekey; not for sessions.",
		},
	)
	drill := &command{
		name: "drill", run: runDrill,
		synopsis: "--primary R --secondary R --secondary-endpoint HOST:PORT --mode switchover|failover [--secrets PREFIX] [--canary N] [--report F] [--json] [--max-rto D] [--max-rpo N]",
		summary:  "Run a failover drill against live regions and write a report",
		detail: "Writes canary secrets in the primary (replicated to the secondary), measures the lag,\n" +
			"cuts (switchover: planned, RPO 0; failover: fences the primary and promotes the\n" +
			"secondary at once), measures RTO and RPO, verifies canary reads and writes in both\n" +
			"regions, fails back, verifies again, accounts for every acknowledged canary write, and\n" +
			"deletes the canaries. Progress goes to stderr; exits 1 when the verdict is FAIL.",
	}
	return group("coffer", "",
		"coffer is the command-line client for Coffer, a self-hosted secrets manager\ncompatible with AWS Secrets Manager.",
		secrets, rotation, cluster, region, drill, iam, operator, auditCommands(), agentCmd, execCmd)
}
