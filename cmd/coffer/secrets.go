package main

import (
	"encoding/base64"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

func runCreate(l *leaf, args []string) error {
	var (
		value       valueFlags
		tags        stringsFlag
		description = l.fs.String("description", "", "description, free `TEXT`")
		kmsKeyID    = l.fs.String("kms-key-id", "", "`KEY` id, ARN or alias that encrypts the secret (default alias/coffer/default)")
	)
	var replicas stringsFlag
	value.register(l)
	l.fs.Var(&tags, "tag", "tag to attach, as `KEY=VALUE`; repeatable")
	l.fs.Var(&replicas, "replica-region", "replicate to `REGION[=KMS_KEY]`; repeatable")
	forceReplica := l.fs.Bool("force-overwrite-replica", false, "replace a same-named secret in a replica region")
	token := registerToken(l)
	pos, err := l.parse(args, "NAME")
	if err != nil {
		return err
	}
	tagList, err := parseTags(tags)
	if err != nil {
		return l.usageErrorf("%v", err)
	}
	v, err := value.read(l, false)
	if err != nil {
		return err
	}
	resp, err := call(l, client.CreateSecret, &cofferv1.CreateSecretRequest{
		Name:               pos[0],
		ClientRequestToken: token(),
		Description:        *description,
		KmsKeyId:           *kmsKeyID,
		SecretString:       v.str,
		SecretBinary:       v.bin,
		Tags:               tagList,

		AddReplicaRegions:           parseReplicaRegions(replicas),
		ForceOverwriteReplicaSecret: *forceReplica,
	})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		t.field("ARN", resp.GetArn())
		t.field("Name", resp.GetName())
		t.field("VersionId", resp.GetVersionId())
		if len(resp.GetReplicationStatus()) > 0 {
			t.fieldLines("ReplicationStatus", replicationLines(resp.GetReplicationStatus()))
		}
	})
}

func runGet(l *leaf, args []string) error {
	var (
		versionID = l.fs.String("version-id", "", "read the version with this `ID`")
		stage     = l.fs.String("stage", "", "read the version with this `LABEL`, such as AWSPREVIOUS")
		valueOnly = l.fs.Bool("value-only", false, "print only the value, for scripts")
	)
	pos, err := l.parse(args, "ID")
	if err != nil {
		return err
	}
	resp, err := call(l, client.GetSecretValue, &cofferv1.GetSecretValueRequest{
		SecretId:     pos[0],
		VersionId:    *versionID,
		VersionStage: *stage,
	})
	if err != nil {
		return err
	}
	if *valueOnly {
		switch {
		case resp.SecretString != nil:
			_, err = l.inv.stdout.Write([]byte(resp.GetSecretString() + "\n"))
		case resp.SecretBinary != nil:
			_, err = l.inv.stdout.Write(resp.GetSecretBinary())
		default:
			err = errors.New("the server returned no value")
		}
		return err
	}
	return l.print(resp, func(t *table) {
		t.field("ARN", resp.GetArn())
		t.field("Name", resp.GetName())
		t.field("VersionId", resp.GetVersionId())
		t.field("VersionStages", strings.Join(resp.GetVersionStages(), ","))
		t.field("CreatedDate", formatTime(resp.GetCreatedDate()))
		if resp.SecretString != nil {
			t.field("SecretString", resp.GetSecretString())
		}
		if resp.SecretBinary != nil {
			t.field("SecretBinary", "base64:"+base64.StdEncoding.EncodeToString(resp.GetSecretBinary()))
		}
	})
}

func runPut(l *leaf, args []string) error {
	var (
		value  valueFlags
		stages stringsFlag
	)
	value.register(l)
	l.fs.Var(&stages, "stage", "staging `LABEL` for the new version; repeatable (default AWSCURRENT)")
	token := registerToken(l)
	pos, err := l.parse(args, "ID")
	if err != nil {
		return err
	}
	v, err := value.read(l, true)
	if err != nil {
		return err
	}
	resp, err := call(l, client.PutSecretValue, &cofferv1.PutSecretValueRequest{
		SecretId:           pos[0],
		ClientRequestToken: token(),
		SecretString:       v.str,
		SecretBinary:       v.bin,
		VersionStages:      stages,
	})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		t.field("ARN", resp.GetArn())
		t.field("Name", resp.GetName())
		t.field("VersionId", resp.GetVersionId())
		t.field("VersionStages", strings.Join(resp.GetVersionStages(), ","))
	})
}

func runUpdate(l *leaf, args []string) error {
	var (
		value       valueFlags
		description = l.fs.String("description", "", "new description `TEXT`; \"\" clears it")
		kmsKeyID    = l.fs.String("kms-key-id", "", "`KEY` that encrypts new versions")
	)
	value.register(l)
	token := registerToken(l)
	pos, err := l.parse(args, "ID")
	if err != nil {
		return err
	}
	v, err := value.read(l, false)
	if err != nil {
		return err
	}
	req := &cofferv1.UpdateSecretRequest{
		SecretId:           pos[0],
		ClientRequestToken: token(),
		SecretString:       v.str,
		SecretBinary:       v.bin,
	}
	if l.given["description"] {
		req.Description = description
	}
	if l.given["kms-key-id"] {
		req.KmsKeyId = kmsKeyID
	}
	if req.Description == nil && req.KmsKeyId == nil && v.str == nil && v.bin == nil {
		return l.usageErrorf("nothing to update: give --description, --kms-key-id or a value")
	}
	resp, err := call(l, client.UpdateSecret, req)
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		t.field("ARN", resp.GetArn())
		t.field("Name", resp.GetName())
		t.field("VersionId", resp.GetVersionId())
	})
}

func runDescribe(l *leaf, args []string) error {
	pos, err := l.parse(args, "ID")
	if err != nil {
		return err
	}
	resp, err := call(l, client.DescribeSecret, &cofferv1.DescribeSecretRequest{SecretId: pos[0]})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		t.field("Name", resp.GetName())
		t.field("ARN", resp.GetArn())
		t.field("Description", resp.GetDescription())
		t.field("KmsKeyId", resp.GetKmsKeyId())
		t.field("CreatedDate", formatTime(resp.GetCreatedDate()))
		t.field("LastChangedDate", formatTime(resp.GetLastChangedDate()))
		t.field("LastAccessedDate", formatTime(resp.GetLastAccessedDate()))
		t.field("DeletedDate", formatTime(resp.GetDeletedDate()))
		t.field("RotationEnabled", formatBool(resp.GetRotationEnabled()))
		t.field("RotationLambdaARN", resp.GetRotationLambdaArn())
		t.field("RotationRules", formatRotationRules(resp.GetRotationRules()))
		t.field("LastRotatedDate", formatTime(resp.GetLastRotatedDate()))
		t.field("NextRotationDate", formatTime(resp.GetNextRotationDate()))
		t.fieldLines("RotationStatus", rotationStatusLines(resp.GetRotationStatus()))
		t.field("OwningService", resp.GetOwningService())
		t.field("PrimaryRegion", resp.GetPrimaryRegion())
		t.fieldLines("ReplicationStatus", replicationLines(resp.GetReplicationStatus()))
		t.fieldLines("Tags", tagLines(resp.GetTags()))
		t.fieldLines("VersionIdsToStages", versionStageLines(resp.GetVersionIdsToStages()))
	})
}

// listSortBy and listSortOrder are the values ListSecrets accepts.
var (
	listSortBy    = []string{"created-date", "last-accessed-date", "last-changed-date", "name"}
	listSortOrder = []string{"asc", "desc"}
)

func runList(l *leaf, args []string) error {
	var (
		filters        stringsFlag
		includeDeleted = l.fs.Bool("include-deleted", false, "include secrets scheduled for deletion")
		sortBy         = l.fs.String("sort-by", "", "sort `FIELD`: "+strings.Join(listSortBy, ", ")+" (default created-date)")
		sortOrder      = l.fs.String("sort-order", "", "sort `ORDER`: asc or desc (default asc)")
		pageSize       = l.fs.Int("page-size", 0, "secrets per RPC, `N` (default the server's, 100)")
	)
	l.fs.Var(&filters, "filter", "filter, as `KEY=VALUE`; repeatable")
	if _, err := l.parse(args); err != nil {
		return err
	}
	filterList, err := parseFilters(filters)
	if err != nil {
		return l.usageErrorf("%v", err)
	}
	if l.given["sort-by"] && !slices.Contains(listSortBy, *sortBy) {
		return l.usageErrorf("--sort-by %q: want one of %s", *sortBy, strings.Join(listSortBy, ", "))
	}
	if l.given["sort-order"] && !slices.Contains(listSortOrder, *sortOrder) {
		return l.usageErrorf("--sort-order %q: want asc or desc", *sortOrder)
	}
	req := &cofferv1.ListSecretsRequest{
		IncludePlannedDeletion: *includeDeleted,
		Filters:                filterList,
		SortBy:                 *sortBy,
		SortOrder:              *sortOrder,
	}
	if l.given["page-size"] {
		if *pageSize < 1 || *pageSize > math.MaxInt32 {
			return l.usageErrorf("--page-size %d: must be positive", *pageSize)
		}
		req.MaxResults = proto.Int32(int32(*pageSize))
	}
	all := &cofferv1.ListSecretsResponse{}
	err = followPages(func(token string) (string, error) {
		req.NextToken = token
		resp, err := call(l, client.ListSecrets, req)
		if err != nil {
			return "", err
		}
		all.SecretList = append(all.SecretList, resp.GetSecretList()...)
		return resp.GetNextToken(), nil
	})
	if err != nil {
		return err
	}
	return l.print(all, func(t *table) {
		header := []string{"NAME", "ARN", "LAST CHANGED", "TAGS"}
		if *includeDeleted {
			header = append(header, "DELETED")
		}
		t.row(header...)
		for _, s := range all.GetSecretList() {
			row := []string{s.GetName(), s.GetArn(), formatTime(s.GetLastChangedDate()), strconv.Itoa(len(s.GetTags()))}
			if *includeDeleted {
				row = append(row, formatTime(s.GetDeletedDate()))
			}
			t.row(row...)
		}
	})
}

func runVersions(l *leaf, args []string) error {
	includeDeprecated := l.fs.Bool("include-deprecated", false, "include versions without labels")
	pos, err := l.parse(args, "ID")
	if err != nil {
		return err
	}
	req := &cofferv1.ListSecretVersionIdsRequest{SecretId: pos[0], IncludeDeprecated: *includeDeprecated}
	var all *cofferv1.ListSecretVersionIdsResponse
	err = followPages(func(token string) (string, error) {
		req.NextToken = token
		resp, err := call(l, client.ListSecretVersionIds, req)
		if err != nil {
			return "", err
		}
		if all == nil {
			all = &cofferv1.ListSecretVersionIdsResponse{Arn: resp.GetArn(), Name: resp.GetName()}
		}
		all.Versions = append(all.Versions, resp.GetVersions()...)
		return resp.GetNextToken(), nil
	})
	if err != nil {
		return err
	}
	return l.print(all, func(t *table) {
		t.row("VERSION ID", "STAGES", "CREATED", "LAST ACCESSED")
		for _, v := range all.GetVersions() {
			t.row(v.GetVersionId(), strings.Join(v.GetVersionStages(), ","), formatTime(v.GetCreatedDate()), formatTime(v.GetLastAccessedDate()))
		}
	})
}

func runLabel(l *leaf, args []string) error {
	var (
		moveTo     = l.fs.String("move-to", "", "attach the label to the version with this `ID`")
		removeFrom = l.fs.String("remove-from", "", "the `ID` of the version the label is on now")
	)
	pos, err := l.parse(args, "ID", "STAGE")
	if err != nil {
		return err
	}
	if !l.given["move-to"] && !l.given["remove-from"] {
		return l.usageErrorf("give --move-to, --remove-from or both")
	}
	resp, err := call(l, client.UpdateSecretVersionStage, &cofferv1.UpdateSecretVersionStageRequest{
		SecretId:            pos[0],
		VersionStage:        pos[1],
		MoveToVersionId:     *moveTo,
		RemoveFromVersionId: *removeFrom,
	})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		t.field("ARN", resp.GetArn())
		t.field("Name", resp.GetName())
	})
}

func runDelete(l *leaf, args []string) error {
	var (
		window = l.fs.Int64("recovery-window-days", 0, "keep the secret restorable for `DAYS`, 7-30 (default 30)")
		force  = l.fs.Bool("force", false, "delete at once, with no way to restore the secret")
	)
	pos, err := l.parse(args, "ID")
	if err != nil {
		return err
	}
	if l.given["recovery-window-days"] && l.given["force"] {
		return l.usageErrorf("give --recovery-window-days or --force, not both")
	}
	req := &cofferv1.DeleteSecretRequest{SecretId: pos[0]}
	if l.given["recovery-window-days"] {
		req.RecoveryWindowInDays = window
	}
	if l.given["force"] {
		req.ForceDeleteWithoutRecovery = force
	}
	resp, err := call(l, client.DeleteSecret, req)
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		t.field("ARN", resp.GetArn())
		t.field("Name", resp.GetName())
		t.field("DeletionDate", formatTime(resp.GetDeletionDate()))
	})
}

func runRestore(l *leaf, args []string) error {
	pos, err := l.parse(args, "ID")
	if err != nil {
		return err
	}
	resp, err := call(l, client.RestoreSecret, &cofferv1.RestoreSecretRequest{SecretId: pos[0]})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		t.field("ARN", resp.GetArn())
		t.field("Name", resp.GetName())
	})
}

func runTag(l *leaf, args []string) error {
	pos, err := l.parse(args, "ID", "KEY=VALUE...")
	if err != nil {
		return err
	}
	tags, err := parseTags(pos[1:])
	if err != nil {
		return l.usageErrorf("%v", err)
	}
	resp, err := call(l, client.TagResource, &cofferv1.TagResourceRequest{SecretId: pos[0], Tags: tags})
	if err != nil {
		return err
	}
	return l.print(resp, func(*table) {})
}

func runUntag(l *leaf, args []string) error {
	pos, err := l.parse(args, "ID", "KEY...")
	if err != nil {
		return err
	}
	resp, err := call(l, client.UntagResource, &cofferv1.UntagResourceRequest{SecretId: pos[0], TagKeys: pos[1:]})
	if err != nil {
		return err
	}
	return l.print(resp, func(*table) {})
}
