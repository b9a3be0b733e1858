package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
)

// BackupJob is the status of a full backup, restore or selective key restore job, as the pool's
// .../pending endpoints answer it (FullBackupOperation, RestoreOperation).
type BackupJob struct {
	Status        string  `json:"status"` // InProgress, Succeeded, Failed or Canceled
	StatusDetails *string `json:"statusDetails"`
	Error         *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	StartTime int64  `json:"startTime"` // Unix seconds
	EndTime   *int64 `json:"endTime"`   // nil while the job runs
	JobID     string `json:"jobId"`
	// FolderURI is azureStorageBlobContainerUri: the folder a successful backup wrote.
	FolderURI *string `json:"azureStorageBlobContainerUri,omitempty"`
}

// BackupJobKind tells the pending endpoint of a job: backups and restores have their own.
type BackupJobKind string

// Values of [BackupJobKind].
const (
	BackupJobs  BackupJobKind = "backup"
	RestoreJobs BackupJobKind = "restore"
)

// BackupStatusClientOptions are optional settings of [NewBackupStatusClient].
type BackupStatusClientOptions struct {
	azcore.ClientOptions
}

// BackupStatusClient reads the status of a backup or restore job by its ID: GET /backup/{id}/pending or
// /restore/{id}/pending. The Azure SDK's azadmin/backup polls these only inside its pollers; this client reads a
// job that another process started. It authorizes requests as [SecurityDomainClient] does.
type BackupStatusClient struct {
	endpoint string
	pl       runtime.Pipeline
}

// NewBackupStatusClient returns a client of the job status endpoints of the pool at poolURL, which must be https.
func NewBackupStatusClient(poolURL string, cred azcore.TokenCredential, opts *BackupStatusClientOptions) (*BackupStatusClient, error) {
	if u, err := url.Parse(poolURL); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("pool URL %q: want an https URL", poolURL)
	}
	if opts == nil {
		opts = &BackupStatusClientOptions{}
	}
	pl := runtime.NewPipeline("hsmpool-backup", "v1", runtime.PipelineOptions{
		PerRetry: []policy.Policy{newChallengePolicy(cred, false)},
	}, &opts.ClientOptions)
	return &BackupStatusClient{endpoint: strings.TrimSuffix(poolURL, "/"), pl: pl}, nil
}

// Status returns the status of job id of kind.
func (c *BackupStatusClient) Status(ctx context.Context, kind BackupJobKind, id string) (*BackupJob, error) {
	op := "get the status of " + string(kind) + " job " + id
	if kind != BackupJobs && kind != RestoreJobs {
		return nil, fmt.Errorf("%s: unknown job kind", op)
	}
	if err := checkPathSegment("job ID", id); err != nil {
		return nil, err
	}
	req, err := runtime.NewRequest(ctx, http.MethodGet, c.endpoint+"/"+string(kind)+"/"+url.PathEscape(id)+"/pending?api-version="+PrincipalsAPIVersion)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	req.Raw().Header.Set("Accept", "application/json")
	resp, err := c.pl.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if !runtime.HasStatusCode(resp, http.StatusOK) {
		return nil, fmt.Errorf("%s: %w", op, newResponseError(resp))
	}
	var j BackupJob
	if err := runtime.UnmarshalAsJSON(resp, &j); err != nil {
		return nil, fmt.Errorf("%s: the answer: %w", op, err)
	}
	return &j, nil
}
