use super::*;
use crate::api::backup::APIManagerBackupStatus;
use crate::api::schedule::APIManagerBackupScheduleSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

fn schedule() -> APIManagerBackupSchedule {
    let spec: APIManagerBackupScheduleSpec = serde_json::from_value(serde_json::json!({
        "schedule": "@daily",
        "template": {"backupDestination": {"persistentVolumeClaim": {"resources": {"requests": "1Gi"}}}},
    }))
    .unwrap();
    let mut schedule = APIManagerBackupSchedule::new("nightly", spec);
    schedule.metadata.namespace = Some("3scale".into());
    schedule.metadata.uid = Some("schedule-uid".into());
    schedule
}

#[test]
fn a_run_creates_a_backup_named_from_its_utc_time_labelled_and_owned_by_the_schedule() {
    let schedule = schedule();
    let backup = backup_for(&schedule, "2026-12-06T02:00:00+01:00".parse().unwrap());
    assert_eq!(backup.name_any(), "nightly-20261206-0100");
    assert_eq!(backup.namespace().as_deref(), Some("3scale"));
    assert_eq!(backup.spec, schedule.spec.template);
    assert_eq!(backup.labels().get(SCHEDULE_LABEL).map(String::as_str), Some("nightly"));
    assert_eq!(backup.labels().get(MANAGED_BY.0).map(String::as_str), Some(MANAGED_BY.1));
    assert_eq!(backup.annotations().get(SCHEDULED_TIME).map(String::as_str), Some("2026-12-06T01:00:00Z"));
    let owner = &backup.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("APIManagerBackupSchedule", "nightly", "schedule-uid")
    );
    assert_eq!(owner.controller, Some(true));
    assert!(belongs_to(&backup, &schedule));
}

#[test]
fn only_backups_labelled_and_owned_by_the_schedule_belong_to_it() {
    let schedule = schedule();
    let ours = backup_for(&schedule, "2026-12-06T00:00:00Z".parse().unwrap());
    let mut unowned = ours.clone();
    unowned.metadata.owner_references = None;
    assert!(!belongs_to(&unowned, &schedule), "a copied label alone does not make it the schedule's");
    let mut unlabelled = ours.clone();
    unlabelled.metadata.labels = None;
    assert!(!belongs_to(&unlabelled, &schedule));
    let mut elsewhere = ours.clone();
    elsewhere.metadata.namespace = Some("other".into());
    assert!(!belongs_to(&elsewhere, &schedule));
    let mut recreated = schedule.clone();
    recreated.metadata.uid = Some("another-uid".into());
    assert!(!belongs_to(&ours, &recreated), "a schedule recreated under the same name does not inherit");
}

#[test]
fn a_backups_outcome_for_retention() {
    let mut backup = backup_for(&schedule(), "2026-12-06T00:00:00Z".parse().unwrap());
    assert_eq!(outcome(&backup), Outcome::Running);
    backup.status = Some(APIManagerBackupStatus { completed: Some(true), ..Default::default() });
    assert_eq!(outcome(&backup), Outcome::Completed);
    let failed = Condition {
        type_: FAILED.into(),
        status: "True".into(),
        reason: "StepFailed".into(),
        message: String::new(),
        observed_generation: None,
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
    };
    backup.status = Some(APIManagerBackupStatus { conditions: vec![failed], ..Default::default() });
    assert_eq!(outcome(&backup), Outcome::Failed);
}

#[test]
fn the_backup_label_wakes_its_schedule() {
    let backup = backup_for(&schedule(), "2026-12-06T00:00:00Z".parse().unwrap());
    assert_eq!(schedule_of(&backup), Some(ObjectRef::new("nightly").within("3scale")));
}

#[test]
fn later_of_two_times() {
    let (a, b) = (Time("2026-12-01T00:00:00Z".parse().unwrap()), Time("2026-12-02T00:00:00Z".parse().unwrap()));
    assert_eq!(later(Some(a.clone()), Some(b.clone())), Some(b.clone()));
    assert_eq!(later(Some(b.clone()), Some(a.clone())), Some(b.clone()));
    assert_eq!(later(None, Some(a.clone())), Some(a.clone()));
    assert_eq!(later(None, None), None);
}
