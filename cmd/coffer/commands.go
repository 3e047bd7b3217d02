package main

// commandTree returns the commands coffer understands. Each leaf makes one RPC
// (list and versions repeat theirs to follow pages).
func commandTree() *command {
	policy := group("policy", "Manage a secret's resource-based policy",
		"Get, attach, remove or check a secret's resource-based (IAM JSON) policy.",
		&command{
			name: "get", synopsis: "ID", run: runPolicyGet,
			summary: "Show a secret's resource policy",
		},
		&command{
			name: "put", synopsis: "ID (--file F | --policy JSON) [--block-public-policy=true|false]", run: runPolicyPut,
			summary: "Attach a resource policy to a secret",
			detail:  "Attaches the policy, replacing any previous one. The server refuses a policy that\ngrants broad access unless --block-public-policy=false.",
		},
		&command{
			name: "delete", synopsis: "ID", run: runPolicyDelete,
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
			name: "create", synopsis: "NAME [--value V | --value-file F | --binary-file F] [--description D] [--kms-key-id K] [--tag k=v]... [--token T]", run: runCreate,
			summary: "Create a secret, with a first version when a value is given",
		},
		&command{
			name: "get", synopsis: "ID [--version-id V] [--stage S] [--value-only]", run: runGet,
			summary: "Show a secret's value",
			detail:  "Shows the AWSCURRENT version unless --version-id or --stage selects another.\nWith --value-only, prints only the value: the text and a newline, or the raw\nbytes of a binary secret (whatever -o says).",
		},
		&command{
			name: "put", synopsis: "ID (--value V | --value-file F | --binary-file F) [--stage S]... [--token T]", run: runPut,
			summary: "Store a new version of a secret's value",
			detail:  "The new version gets the labels given by --stage, or AWSCURRENT when none is given.",
		},
		&command{
			name: "update", synopsis: "ID [--description D] [--kms-key-id K] [--value V | --value-file F | --binary-file F] [--token T]", run: runUpdate,
			summary: "Change a secret's description, KMS key or value",
			detail:  "Only what is given changes: --description \"\" clears the description, and leaving\nthe flag out keeps it.",
		},
		&command{
			name: "describe", synopsis: "ID", run: runDescribe,
			summary: "Show a secret's metadata (never its value)",
		},
		&command{
			name: "list", synopsis: "[--filter key=value]... [--include-deleted] [--sort-by F] [--sort-order asc|desc] [--page-size N]", run: runList,
			summary: "List secrets, following all pages",
			detail:  "Filter keys are description, name, tag-key, tag-value, primary-region, owning-service\nand all; values are prefixes, and a leading ! negates one. A secret matches when every\nkey matches; repeating a key adds values, any of which may match.",
		},
		&command{
			name: "versions", synopsis: "ID [--include-deprecated]", run: runVersions,
			summary: "List a secret's versions, following all pages",
		},
		&command{
			name: "label", synopsis: "ID STAGE [--move-to V] [--remove-from V]", run: runLabel,
			summary: "Move a staging label to another version, or remove it",
			detail:  "Moving a label that is on a version needs --remove-from with that version's id.\nGive --remove-from alone to take the label off.",
		},
		&command{
			name: "delete", synopsis: "ID [--recovery-window-days N] [--force]", run: runDelete,
			summary: "Schedule a secret for deletion, or delete it now with --force",
			detail:  "Without --force the secret can be restored until the recovery window\n(30 days unless --recovery-window-days says 7-30) ends.",
		},
		&command{
			name: "restore", synopsis: "ID", run: runRestore,
			summary: "Cancel a scheduled deletion",
		},
		&command{
			name: "tag", synopsis: "ID KEY=VALUE...", run: runTag,
			summary: "Add or overwrite tags",
		},
		&command{
			name: "untag", synopsis: "ID KEY...", run: runUntag,
			summary: "Remove tags",
		},
		policy,
		&command{
			name: "random-password", synopsis: "[--length N] [--exclude-characters S] [--exclude-numbers] [--exclude-punctuation] [--exclude-uppercase] [--exclude-lowercase] [--include-space] [--require-each-included-type=true|false]", run: runRandomPassword,
			summary: "Generate a random password (stores nothing)",
			detail:  "Table output is only the password and a newline, so that\nPW=$(coffer secrets random-password) works.",
		},
	)
	return group("coffer", "",
		"coffer is the command-line client for Coffer, a self-hosted secrets manager\ncompatible with AWS Secrets Manager.",
		secrets)
}
