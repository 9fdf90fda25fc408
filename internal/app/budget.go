package app

import (
	"fmt"
	"net/url"

	"github.com/rs/zerolog"

	"dvbulk/internal/budget"
	"dvbulk/internal/checkpoint"
	"dvbulk/internal/dataverse"
)

// NewBudget builds the service-protection budget that instance shares, over st, with every other
// instance of the same application user on cfg's environment; nil when DVBULK_SHARED_BUDGET is
// false. The caller runs it (Run) for as long as the client may send, and passes it to NewEngine
// with WithBudget.
func NewBudget(cfg *Config, st checkpoint.Store, instance string, log zerolog.Logger) (*budget.Shared, error) {
	if !cfg.SharedBudget {
		return nil, nil
	}
	u, err := url.Parse(cfg.DataverseURL)
	if err != nil {
		return nil, &SettingError{Name: "DATAVERSE_URL", Problem: err.Error()}
	}
	b, err := budget.New(budget.Config{Store: st, Environment: u.Host, User: budgetUser(cfg), Instance: instance,
		Refresh: cfg.BudgetRefresh, Heartbeat: cfg.BudgetHeartbeat, Skew: cfg.BudgetSkew, Log: log})
	if err != nil {
		return nil, fmt.Errorf("shared budget: %w", err)
	}
	return b, nil
}

// budgetUser names the application user whose budget the instance spends: Dataverse counts its
// limits per user, so instances share a budget exactly when they authenticate as the same identity.
// Without AZURE_CLIENT_ID the identity is the app's own (system-assigned managed identity, or
// whatever DefaultAzureCredential finds), the same on every instance of the app.
func budgetUser(cfg *Config) string {
	if cfg.DataverseAuth == "none" {
		return "anonymous"
	}
	if cfg.Identity.ClientID != "" {
		return cfg.Identity.ClientID
	}
	return cfg.DataverseAuth
}

// EngineOption adjusts what NewEngine builds.
type EngineOption func(*dataverse.Config)

// WithBudget makes the Dataverse client share b (nil: throttle alone).
func WithBudget(b *budget.Shared) EngineOption {
	return func(c *dataverse.Config) {
		if b != nil {
			c.Budget = b
		}
	}
}
