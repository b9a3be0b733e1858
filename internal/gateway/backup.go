package gateway

import (
	"net/http"
	"net/url"

	pb "github.com/hsmpool/hsmpool/proto/hsmpool/v1"
)

// Full backup, restore and selective key restore (azure-mhsm-api.md §5.3). Every start answers
// 202 with the job's status, an absolute Azure-AsyncOperation (the Go pollers' URL) and
// Retry-After: 1; the JS pollers read jobId from the body and poll the pending URLs themselves.

var errNoBackup = newError(http.StatusNotImplemented, "NotImplemented", "Full backup and restore are not available on this pool.")

// sasParams is SASTokenParameter, and PreBackupOperationParameters.
type sasParams struct {
	StorageResourceURI string `json:"storageResourceUri"`
	Token              string `json:"token"`
	UseManagedIdentity bool   `json:"useManagedIdentity"`
}

func (p *sasParams) location() *pb.StorageLocation {
	if p == nil {
		return nil
	}
	return &pb.StorageLocation{Uri: p.StorageResourceURI, Token: p.Token, UseManagedIdentity: p.UseManagedIdentity}
}

type restoreParams struct {
	SASTokenParameters *sasParams `json:"sasTokenParameters"`
	FolderToRestore    string     `json:"folderToRestore"`
}

type keyRestoreParams struct {
	SASTokenParameters *sasParams `json:"sasTokenParameters"`
	Folder             string     `json:"folder"`
}

// jobError is the error of a failed job.
type jobError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// jobStatus is FullBackupOperation, RestoreOperation and SelectiveKeyRestoreOperation. EndTime
// is null while the job runs: the JS pollers take its presence for completion.
type jobStatus struct {
	Status        string    `json:"status"`
	StatusDetails *string   `json:"statusDetails"`
	Error         *jobError `json:"error"`
	StartTime     int64     `json:"startTime"`
	EndTime       *int64    `json:"endTime"`
	JobID         string    `json:"jobId"`
}

// backupStatus is FullBackupOperation: a jobStatus with azureStorageBlobContainerUri, the
// folder written (null until the backup succeeds).
type backupStatus struct {
	jobStatus
	FolderURI *string `json:"azureStorageBlobContainerUri"`
}

func toJobStatus(j *pb.BackupJob) jobStatus {
	s := jobStatus{Status: j.Status, StartTime: j.StartTime, JobID: j.JobId}
	if j.StatusDetails != "" {
		s.StatusDetails = &j.StatusDetails
	}
	if j.EndTime != 0 {
		s.EndTime = &j.EndTime
	}
	if j.ErrorCode != "" || j.ErrorMessage != "" {
		s.Error = &jobError{Code: j.ErrorCode, Message: j.ErrorMessage}
	}
	return s
}

// backupJob is the answer with job j; kind is "backup" or "restore", the pending URL's first
// segment. A 202 gets the poller headers.
func (g *Gateway) backupJob(c *call, j *pb.BackupJob, kind string) any {
	if c.status == http.StatusAccepted {
		h := c.w.Header()
		h.Set("Azure-AsyncOperation", c.url(kind, j.JobId, "pending")+"?api-version="+url.QueryEscape(c.apiVersion))
		h.Set("Retry-After", "1")
	}
	if kind != "backup" {
		return toJobStatus(j)
	}
	s := backupStatus{jobStatus: toJobStatus(j)}
	if j.FolderUri != "" {
		s.FolderURI = &j.FolderUri
	}
	return s
}

func (g *Gateway) startBackup(c *call, checkOnly bool) (any, error) {
	if g.backup == nil {
		return nil, errNoBackup
	}
	var p sasParams
	if err := g.decode(c, &p); err != nil {
		return nil, err
	}
	if p.StorageResourceURI == "" && !checkOnly {
		return nil, badParameter("storageResourceUri is required: the URI of a blob container (or a file:// directory).")
	}
	j, err := g.backup.StartBackup(c.ctx, &pb.BackupRequest{Location: p.location(), CheckOnly: checkOnly})
	if err != nil {
		return nil, err
	}
	c.status = http.StatusAccepted
	return g.backupJob(c, j, "backup"), nil
}

func (g *Gateway) fullBackup(c *call) (any, error) { return g.startBackup(c, false) }
func (g *Gateway) preBackup(c *call) (any, error)  { return g.startBackup(c, true) }

func (g *Gateway) startRestore(c *call, checkOnly bool) (any, error) {
	if g.backup == nil {
		return nil, errNoBackup
	}
	var p restoreParams
	if err := g.decode(c, &p); err != nil {
		return nil, err
	}
	if p.SASTokenParameters == nil || p.SASTokenParameters.StorageResourceURI == "" {
		return nil, badParameter("sasTokenParameters.storageResourceUri is required.")
	}
	if p.FolderToRestore == "" {
		return nil, badParameter("folderToRestore is required.")
	}
	j, err := g.backup.StartRestore(c.ctx, &pb.RestoreRequest{Location: p.SASTokenParameters.location(), Folder: p.FolderToRestore, CheckOnly: checkOnly})
	if err != nil {
		return nil, err
	}
	c.status = http.StatusAccepted
	return g.backupJob(c, j, "restore"), nil
}

func (g *Gateway) fullRestore(c *call) (any, error) { return g.startRestore(c, false) }
func (g *Gateway) preRestore(c *call) (any, error)  { return g.startRestore(c, true) }

func (g *Gateway) keyRestore(c *call) (any, error) {
	if g.backup == nil {
		return nil, errNoBackup
	}
	var p keyRestoreParams
	if err := g.decode(c, &p); err != nil {
		return nil, err
	}
	if p.SASTokenParameters == nil || p.SASTokenParameters.StorageResourceURI == "" {
		return nil, badParameter("sasTokenParameters.storageResourceUri is required.")
	}
	if p.Folder == "" {
		return nil, badParameter("folder is required.")
	}
	j, err := g.backup.StartKeyRestore(c.ctx, &pb.KeyRestoreRequest{Name: c.name, Location: p.SASTokenParameters.location(), Folder: p.Folder})
	if err != nil {
		return nil, err
	}
	c.status = http.StatusAccepted
	return g.backupJob(c, j, "restore"), nil
}

func (g *Gateway) backupPending(c *call) (any, error) {
	if g.backup == nil {
		return nil, errNoBackup
	}
	j, err := g.backup.GetBackupStatus(c.ctx, &pb.JobRef{JobId: c.version})
	if err != nil {
		return nil, err
	}
	return g.backupJob(c, j, "backup"), nil
}

func (g *Gateway) restorePending(c *call) (any, error) {
	if g.backup == nil {
		return nil, errNoBackup
	}
	j, err := g.backup.GetRestoreStatus(c.ctx, &pb.JobRef{JobId: c.version})
	if err != nil {
		return nil, err
	}
	return g.backupJob(c, j, "restore"), nil
}
