//! The registry: every rule, in id order — also those whose findings a live
//! server (`lint --database-url`) or `trace` reports. Adding a rule is adding its file
//! under `rules/` and one line here; `docs/rules.md` follows from a test.

use super::rules::*;
use super::Rule;

/// Every rule, in id order.
pub static RULES: &[Rule] = &[
    adding_unique_constraint::AddingUniqueConstraint::RULE,
    creating_index_without_concurrently::CreatingIndexWithoutConcurrently::RULE,
    dropping_index_without_concurrently::DroppingIndexWithoutConcurrently::RULE,
    reindexing_without_concurrently::ReindexingWithoutConcurrently::RULE,
    concurrently_in_transaction::ConcurrentlyInTransaction::RULE,
    adding_constraint_without_not_valid::AddingConstraintWithoutNotValid::RULE,
    setting_not_null::SettingNotNull::RULE,
    changing_column_type::ChangingColumnType::RULE,
    adding_volatile_default::AddingVolatileDefault::RULE,
    adding_serial_column::AddingSerialColumn::RULE,
    rewriting_table::RewritingTable::RULE,
    refreshing_matview_without_concurrently::RefreshingMatviewWithoutConcurrently::RULE,
    locking_table_maintenance::LockingTableMaintenance::RULE,
    adding_domain_constraint::AddingDomainConstraint::RULE,
    adding_required_column::AddingRequiredColumn::RULE,
    renaming_column_or_table::RenamingColumnOrTable::RULE,
    dropping_column_or_table::DroppingColumnOrTable::RULE,
    adding_json_column::AddingJsonColumn::RULE,
    holding_access_exclusive_across_statements::HoldingAccessExclusiveAcrossStatements::RULE,
    updating_whole_table::UpdatingWholeTable::RULE,
    querying_while_holding_access_exclusive::QueryingWhileHoldingAccessExclusive::RULE,
    nesting_transactions::NestingTransactions::RULE,
    missing_lock_timeout::MissingLockTimeout::RULE,
    requiring_newer_postgres::RequiringNewerPostgres::RULE,
    holding_lock_on_large_table::HoldingLockOnLargeTable::RULE,
    queueing_behind_open_transactions::QueueingBehindOpenTransactions::RULE,
    unmatched_ignore::UnmatchedIgnore::RULE,
    unknown_alter_subcommand::UnknownAlterSubcommand::RULE,
    lock_model_mismatch::LockModelMismatch::RULE,
    statement_not_traced::StatementNotTraced::RULE,
    statement_failed::StatementFailed::RULE,
];

/// The rule with this id (`LS101`), or this name.
pub fn rule_by_id(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id || r.name == id)
}
