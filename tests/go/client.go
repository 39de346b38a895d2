// Package contract runs docs/go-integration.md through the Go backend's own driver, lib/pq, and
// decodes every answer into the structs of the backend's ML client (below).
package contract

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/lib/pq"
)

// TrainingJob is the answer to train_async (the old 202 + job_id).
type TrainingJob struct {
	JobID     string
	Status    string
	CreatedAt time.Time
}

// TrainingResult is the `result` document of a completed training job, and what train returns.
type TrainingResult struct {
	ModelID           int64              `json:"model_id"`
	ModelType         string             `json:"model_type"`
	ServerID          string             `json:"server_id"`
	RSquared          float64            `json:"r_squared"`
	RMSE              float64            `json:"rmse"`
	MAE               float64            `json:"mae"`
	TrainingSamples   int32              `json:"training_samples"`
	HoldoutSamples    int32              `json:"holdout_samples"`
	QErrorP50         float64            `json:"q_error_p50"`
	QErrorP90         float64            `json:"q_error_p90"`
	QErrorP95         float64            `json:"q_error_p95"`
	IntervalCoverage  float64            `json:"interval_coverage"`
	Activated         bool               `json:"activated"`
	FeatureImportance map[string]float64 `json:"feature_importance"`
	// What the new model was compared with on the same holdout (null before the server's first model).
	ActiveModelQErrorP90     *float64 `json:"active_model_q_error_p90"`
	BaselineLastQErrorP90    *float64 `json:"baseline_last_q_error_p90"`
	BaselineLongrunQErrorP90 *float64 `json:"baseline_longrun_q_error_p90"`
	// The sample trained on (bounded training).
	SamplesAvailable  int64   `json:"samples_available"`
	SamplesUsed       int32   `json:"samples_used"`
	Sampled           bool    `json:"sampled"`
	EstimatedMemoryMB float64 `json:"estimated_memory_mb"`
	// Each forecaster and their online combination on the holdout.
	CombinationQErrorP50 *float64                      `json:"combination_q_error_p50"`
	CombinationQErrorP90 *float64                      `json:"combination_q_error_p90"`
	ModelWeight          *float64                      `json:"model_weight"`
	Forecasters          map[string]map[string]float64 `json:"forecasters"`
	ForecasterNote       *string                       `json:"forecaster_note"`
	// The plan model trained beside it (issue 15); NULL figures and a note when too few plans.
	PlanModelID         *int64   `json:"plan_model_id"`
	PlanModelStatements *int32   `json:"plan_model_statements"`
	PlanModelQErrorP50  *float64 `json:"plan_model_q_error_p50"`
	PlanModelQErrorP90  *float64 `json:"plan_model_q_error_p90"`
	PlanCostQErrorP50   *float64 `json:"plan_cost_q_error_p50"`
	PlanCostQErrorP90   *float64 `json:"plan_cost_q_error_p90"`
	PlanModelNote       *string  `json:"plan_model_note"`
}

// JobProgress is the `progress` document of a job.
type JobProgress struct {
	Phase   string    `json:"phase"`
	Percent float64   `json:"percent"`
	At      time.Time `json:"at"`
}

// TrainingStatus is what the old GET /api/train/performance-model/{job_id} answered.
type TrainingStatus struct {
	JobID             string
	Kind              string
	Status            string // pending, training, completed, failed
	CreatedAt         time.Time
	UpdatedAt         time.Time
	StartedAt         *time.Time
	CompletedAt       *time.Time
	Attempts          int32
	MaxAttempts       int32
	Error             *string
	DeadLettered      bool
	Progress          *JobProgress
	Result            *TrainingResult
	ModelID           int64 // from Result, once completed
	RSquared          float64
	TrainingSamples   int32
	FeatureImportance map[string]float64
}

// PredictionRange is the 90% prediction interval, in milliseconds.
type PredictionRange struct {
	Min float64 `json:"min"`
	Max float64 `json:"max"`
}

// PerformancePrediction is the document pgml_predict_json returns (the old POST /api/predict/query-execution).
type PerformancePrediction struct {
	QueryHash                int64           `json:"query_hash"`
	QueryHashText            string          `json:"query_hash_text"`
	PredictedExecutionTimeMs float64         `json:"predicted_execution_time_ms"`
	Confidence               float64         `json:"confidence"`
	Range                    PredictionRange `json:"range"`
	ModelID                  *int64          `json:"model_id"`
	ModelVersion             *int32          `json:"model_version"`
	Source                   string          `json:"source"`
	PredictionID             *int64          `json:"prediction_id"`
	ServerID                 string          `json:"server_id"`
	Logged                   bool            `json:"logged"`
	Timestamp                time.Time       `json:"timestamp"`
	Forecaster               *string         `json:"forecaster"` // the forecaster (or mix) that dominated
	Scenario                 map[string]any  `json:"scenario"`   // what was assumed
	// The 'optimized' scenario's index advice and its one sentence; empty and null otherwise.
	RecommendedIndexes     []string `json:"recommended_indexes"`
	OptimizationSuggestion *string  `json:"optimization_suggestion"`
}

// PredictionRow is one row of predict_row and predict_all: the same prediction as typed columns.
type PredictionRow struct {
	PredictionID             *int64
	QueryHash                int64
	PredictedExecutionTimeMs float64
	LowerBoundMs             float64
	UpperBoundMs             float64
	Confidence               float64
	ModelID                  *int64
	ModelVersion             *int32
	Source                   string
	At                       time.Time // predicted_at (predict_row) or based_on (predict_all)
}

// ValidationResult is what the old POST /api/validate/prediction answered.
type ValidationResult struct {
	PredictionID             int64
	QueryHash                int64
	PredictedExecutionTimeMs float64
	ActualExecutionTimeMs    float64
	ErrorPercent             float64
	AccuracyScore            float64
	WithinConfidenceInterval bool
	// The old service's fixed text; the SQL answer has no message column, the client writes its own.
	Message   string
	Timestamp time.Time // validated_at
}

// WorkloadPattern is one pattern of the workload patterns document.
type WorkloadPattern struct {
	Type        string                     `json:"type"` // daily_cycle, weekly_cycle, trend, spike, level_shift, plan_change
	Description string                     `json:"description"`
	Confidence  float64                    `json:"confidence"`
	QueryHash   *int64                     `json:"query_hash"` // null for a server-wide pattern
	Metric      string                     `json:"metric"`
	Metadata    map[string]json.RawMessage `json:"metadata"`
}

// WorkloadPatterns is the document pgml_detect_patterns_json returns (DetectWorkloadPatterns).
type WorkloadPatterns struct {
	PatternsDetected int               `json:"patterns_detected"`
	Patterns         []WorkloadPattern `json:"patterns"`
	Timestamp        time.Time         `json:"timestamp"`
	ServerID         string            `json:"server_id"`
	LookbackDays     int32             `json:"lookback_days"`
	WindowStart      *time.Time        `json:"window_start"`
	WindowEnd        *time.Time        `json:"window_end"`
}

// StoredPattern is one row of the patterns the hourly job stored.
type StoredPattern struct {
	Type        string
	QueryHash   *int64
	Metric      string
	Description string
	Confidence  float64
	Metadata    map[string]json.RawMessage
	DetectedAt  time.Time
}

// ServiceStatus is the document pgml_status returns (the old GET /api/status).
type ServiceStatus struct {
	Service           string    `json:"service"`
	Status            string    `json:"status"` // healthy, degraded
	Problems          []string  `json:"problems"`
	Version           string    `json:"version"`
	Database          string    `json:"database"`
	DatabaseConnected bool      `json:"database_connected"`
	CheckedAt         time.Time `json:"checked_at"`
	PgStatStatements  struct {
		Loaded    bool `json:"loaded"`
		Installed bool `json:"installed"`
	} `json:"pg_stat_statements"`
	Scheduler struct {
		PgCronLoaded    bool   `json:"pg_cron_loaded"`
		PgCronInstalled bool   `json:"pg_cron_installed"`
		CronDatabase    string `json:"cron_database"`
		ScheduledJobs   *int64 `json:"scheduled_jobs"`
		State           string `json:"state"`
		SnapshotSeconds *int64 `json:"snapshot_seconds"`
	} `json:"scheduler"`
	PendingJobs      int64 `json:"pending_jobs"`
	TrainingJobs     int64 `json:"training_jobs"`
	RunningJobs      int64 `json:"running_jobs"`
	FailedJobs       int64 `json:"failed_jobs"`
	DeadLetteredJobs int64 `json:"dead_lettered_jobs"`
	CancelledJobs    int64 `json:"cancelled_jobs"`
	ForecastRefresh  struct {
		PushForecasts      string     `json:"push_forecasts"` // auto, inline or queued
		ServersWaiting     int64      `json:"servers_waiting"`
		OldestWaitingSince *time.Time `json:"oldest_waiting_since"`
	} `json:"forecast_refresh"`
	ActiveModel *struct {
		ModelID     int64      `json:"model_id"`
		ServerID    string     `json:"server_id"`
		ModelType   string     `json:"model_type"`
		Version     int32      `json:"version"`
		CreatedAt   time.Time  `json:"created_at"`
		ActivatedAt *time.Time `json:"activated_at"`
		QErrorP90   *float64   `json:"q_error_p90"`
	} `json:"active_model"`
	ActiveModels          int64 `json:"active_models"`
	PredictionAccuracy24h struct {
		Validated        int64    `json:"validated"`
		MeanAccuracy     *float64 `json:"mean_accuracy"`
		QErrorP50        *float64 `json:"q_error_p50"`
		QErrorP90        *float64 `json:"q_error_p90"`
		IntervalCoverage *float64 `json:"interval_coverage"`
	} `json:"prediction_accuracy_24h"`
	Regressions       int64 `json:"regressions"`
	StatementsTracked int64 `json:"statements_tracked"`
	Servers           []struct {
		ServerID       string     `json:"server_id"`
		Statements     int64      `json:"statements"`
		Snapshots      int64      `json:"snapshots"`
		LastSnapshotAt *time.Time `json:"last_snapshot_at"`
	} `json:"servers"`
	LastSnapshotAt *time.Time `json:"last_snapshot_at"`
}

// Model is one row of models and of activate (which returns the first six columns).
type Model struct {
	ModelID          int64
	ServerID         string
	ModelType        string
	Version          int32
	CreatedAt        time.Time
	IsActive         bool
	ActivatedAt      *time.Time
	TrainingSamples  int32
	RSquared         float64
	RMSE             float64
	MAE              float64
	QErrorP50        float64
	QErrorP90        float64
	IntervalCoverage float64
}

// SQLState is the SQLSTATE of a server error, as the backend branches on it ("" when err is not one).
func SQLState(err error) string {
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		return string(pqErr.Code)
	}
	return ""
}

// decodeStrict unmarshals a JSON document into v and fails on any key v has no field for: a key the
// server sends that the client cannot read is drift between the server, this client and the doc.
func decodeStrict(doc []byte, v any) error {
	if err := json.Unmarshal(doc, v); err != nil {
		return err
	}
	var known, sent map[string]any
	encoded, _ := json.Marshal(v)
	_ = json.Unmarshal(encoded, &known)
	if err := json.Unmarshal(doc, &sent); err != nil {
		return err
	}
	return missingKeys("", sent, known)
}

func missingKeys(prefix string, sent, known map[string]any) error {
	for key, value := range sent {
		model, ok := known[key]
		if !ok {
			return fmt.Errorf("key %s%s is sent by the server but not in the Go struct", prefix, key)
		}
		if err := missingIn(prefix+key, value, model); err != nil {
			return err
		}
	}
	return nil
}

func missingIn(path string, sent, known any) error {
	switch sent := sent.(type) {
	case map[string]any:
		if known, ok := known.(map[string]any); ok {
			return missingKeys(path+".", sent, known)
		}
	case []any:
		if known, ok := known.([]any); ok && len(known) == len(sent) {
			for i := range sent {
				if err := missingIn(fmt.Sprintf("%s[%d]", path, i), sent[i], known[i]); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// nullString scans a nullable text column.
func nullString(s sql.NullString) *string {
	if !s.Valid {
		return nil
	}
	return &s.String
}

func pqHint(err error) string {
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		return pqErr.Hint
	}
	return ""
}
