use std::time::Duration;

use proptest::prelude::*;
use warmspace_prebuilds::schedule::Schedule;

use super::*;
use crate::model::*;

/// The example of the design document.
const DESIGN: &str = r#"
provisioner = "exec"      # echo | exec | terraform   (required)
claim       = "rebuild"   # rebuild (default) | reinit

parameter "region" {
  display_name = "Region"
  description  = "Where the workspace runs"
  type         = "string"
  default      = "us"
  mutable      = false
  option {
    name  = "US East"
    value = "us"
    description = "Virginia"
    icon = "/icon/us.svg"
  }
  option {
    name  = "EU West"
    value = "eu"
  }
}

parameter "cpus" {
  type    = "number"
  default = 2
  mutable = true
  validation {
    min = 1
    max = 16
  }
}

preset "us-small" {
  description = "US East, 2 CPUs"
  icon        = "/icon/us.svg"
  default     = true
  parameters  = { region = "us", cpus = "2" }
  prebuilds {
    instances = 1
    expiration_policy {
      ttl = 86400
    }
    scheduling {
      timezone = "America/New_York"
      schedule {
        cron      = "* 8-18 * * 1-5"
        instances = 3
      }
      schedule {
        cron      = "* 8-14 * * 6"
        instances = 1
      }
    }
  }
}

agent "main" {
  startup_script = "echo ready"
  env            = { EDITOR = "vim" }
}

exec {
  start   = "scripts/start.sh"
  stop    = "scripts/stop.sh"
  delete  = "scripts/delete.sh"
  timeout = "10m"
}
"#;

const ECHO_BLOCK: &str = r#"
echo {
  duration_ms      = 200
  fail_on          = ["stop"]
  replace_on_claim = ["module.home.volume"]
}
"#;

/// The design example with the echo backend instead of exec.
fn design_with_echo() -> String {
    let exec_at = DESIGN.find("\nexec {").unwrap();
    let without_exec = &DESIGN[..exec_at];
    without_exec.replace(r#"provisioner = "exec""#, r#"provisioner = "echo""#) + ECHO_BLOCK
}

fn errors(source: &str) -> Vec<ManifestError> {
    match parse(source) {
        Ok(manifest) => panic!("expected problems, parsed {manifest:#?}"),
        Err(errors) => errors,
    }
}

/// The one problem of `source`.
fn error(source: &str) -> ManifestError {
    let mut all = errors(source);
    assert_eq!(all.len(), 1, "expected exactly one problem, got {all:#?}");
    all.remove(0)
}

/// A manifest with the echo provisioner and `rest`.
fn echo(rest: &str) -> String {
    format!("provisioner = \"echo\"\n{rest}")
}

/// `echo` plus the design's parameters, for presets to refer to.
fn with_parameters(rest: &str) -> String {
    let start = DESIGN.find("parameter \"region\"").unwrap();
    let end = DESIGN.find("preset \"us-small\"").unwrap();
    echo(&format!("{}\n{rest}", &DESIGN[start..end]))
}

/// A preset `us-small` whose prebuilds block contains `prebuilds`.
fn with_prebuilds(prebuilds: &str) -> String {
    echo(&format!("preset \"us-small\" {{\n  prebuilds {{\n{prebuilds}\n  }}\n}}\n"))
}

/// A preset with scheduled prebuilds at `crons`, in New York.
fn with_schedules(crons: &[&str]) -> String {
    let schedules: String =
        crons.iter().map(|c| format!("schedule {{\n cron = \"{c}\"\n instances = 1\n}}\n")).collect();
    with_prebuilds(&format!("instances = 0\nscheduling {{\n timezone = \"America/New_York\"\n{schedules}}}"))
}

#[test]
fn the_design_example_parses() {
    let manifest = parse(DESIGN).unwrap();
    assert_eq!(manifest.provisioner, Provisioner::Exec);
    assert_eq!(manifest.claim, ClaimMode::Rebuild);

    let [region, cpus] = &manifest.parameters[..] else { panic!("two parameters") };
    assert_eq!(region.name, "region");
    assert_eq!(region.display_name, "Region");
    assert_eq!(region.description, "Where the workspace runs");
    assert_eq!(region.kind, ParameterType::String);
    assert_eq!(region.default.as_deref(), Some("us"));
    assert!(!region.mutable);
    let options: Vec<_> = region.options.iter().map(|o| (&*o.name, &*o.value)).collect();
    assert_eq!(options, [("US East", "us"), ("EU West", "eu")]);
    assert_eq!(region.options[0].description, "Virginia");
    assert_eq!(region.options[0].icon, "/icon/us.svg");
    assert_eq!(region.validation, None);

    assert_eq!(cpus.kind, ParameterType::Number);
    assert_eq!(cpus.display_name, "cpus", "the name stands in for a missing display name");
    assert_eq!(cpus.default.as_deref(), Some("2"));
    assert!(cpus.mutable);
    let validation = Validation { min: Some(1.0), max: Some(16.0), regex: None, error: None };
    assert_eq!(cpus.validation, Some(validation));

    let [preset] = &manifest.presets[..] else { panic!("one preset") };
    assert_eq!(preset.name, "us-small");
    assert!(preset.default);
    assert_eq!(preset.description, "US East, 2 CPUs");
    assert_eq!(preset.icon, "/icon/us.svg");
    let values: Vec<_> = preset.parameters.iter().map(|(k, v)| (&**k, &**v)).collect();
    assert_eq!(values, [("cpus", "2"), ("region", "us")]);
    let expected = PrebuildPolicy {
        instances: 1,
        ttl_seconds: Some(86400),
        scheduling: Some(Scheduling {
            timezone: "America/New_York".into(),
            schedules: vec![
                ScheduleSpec { cron: "* 8-18 * * 1-5".into(), instances: 3 },
                ScheduleSpec { cron: "* 8-14 * * 6".into(), instances: 1 },
            ],
        }),
    };
    assert_eq!(preset.prebuilds, Some(expected));

    let [agent] = &manifest.agents[..] else { panic!("one agent") };
    assert_eq!(agent.name, "main");
    assert_eq!(agent.startup_script, "echo ready");
    assert_eq!(agent.env.get("EDITOR").map(String::as_str), Some("vim"));

    let exec = ExecConfig {
        start: "scripts/start.sh".into(),
        stop: Some("scripts/stop.sh".into()),
        delete: Some("scripts/delete.sh".into()),
        timeout: Duration::from_secs(600),
    };
    assert_eq!(manifest.backend, BackendConfig::Exec(exec));
}

#[test]
fn the_design_example_with_the_echo_backend_parses() {
    let manifest = parse(&design_with_echo()).unwrap();
    assert_eq!(manifest.provisioner, Provisioner::Echo);
    let echo = EchoConfig {
        duration_ms: 200,
        fail_on: vec![Transition::Stop],
        replace_on_claim: vec!["module.home.volume".into()],
    };
    assert_eq!(manifest.backend, BackendConfig::Echo(echo));
    // Everything else is as in the exec version.
    let exec = parse(DESIGN).unwrap();
    assert_eq!(manifest.parameters, exec.parameters);
    assert_eq!(manifest.presets, exec.presets);
    assert_eq!(manifest.agents, exec.agents);
}

#[test]
fn defaults_of_a_minimal_manifest() {
    let manifest = parse(r#"provisioner = "terraform""#).unwrap();
    assert_eq!(manifest.claim, ClaimMode::Rebuild);
    assert_eq!(manifest.backend, BackendConfig::Terraform);
    assert!(manifest.parameters.is_empty() && manifest.presets.is_empty());

    let manifest = parse("provisioner = \"echo\"\nclaim = \"reinit\"").unwrap();
    assert_eq!(manifest.claim, ClaimMode::Reinit);
    let echo = EchoConfig { duration_ms: 0, fail_on: vec![], replace_on_claim: vec![] };
    assert_eq!(manifest.backend, BackendConfig::Echo(echo));

    let manifest = parse("provisioner = \"exec\"\nexec {\n start = \"start.sh\"\n}").unwrap();
    let BackendConfig::Exec(exec) = manifest.backend else { panic!("exec") };
    assert_eq!(exec.timeout, Duration::from_secs(600));
    assert_eq!((exec.stop, exec.delete), (None, None));
}

#[test]
fn a_preset_without_prebuilds_has_no_pool() {
    let manifest = parse(&echo("preset \"p\" {}\npreset \"q\" {\n prebuilds {\n instances = 0\n }\n}")).unwrap();
    assert_eq!(manifest.presets[0].prebuilds, None);
    let pool = PrebuildPolicy { instances: 0, ttl_seconds: None, scheduling: None };
    assert_eq!(manifest.presets[1].prebuilds, Some(pool));
}

#[test]
fn syntax_errors_are_one_problem_with_a_position() {
    let e = error("provisioner = \"echo\"\nparameter \"x\" {\n type = \n}");
    assert_eq!(e.path, "warmspace.hcl");
    assert!(e.message.starts_with("line 3, column"), "{e}");
    // A repeated attribute is the parser's business.
    assert_eq!(error("provisioner = \"echo\"\nprovisioner = \"exec\"").path, "warmspace.hcl");
}

#[test]
fn unknown_key() {
    let e = error(&with_prebuilds("instances = 1\ninstance = 1"));
    assert_eq!(e.path, r#"preset "us-small" › prebuilds"#);
    assert_eq!(e.message, r#"unknown key "instance"; expected one of: instances, expiration_policy, scheduling"#);
    // A misspelt required key is also missing.
    let all = errors(&with_prebuilds("instance = 1"));
    let paths: Vec<_> = all.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, [r#"preset "us-small" › prebuilds"#, r#"preset "us-small" › prebuilds › instances"#]);
}

#[test]
fn unknown_keys_everywhere() {
    let source = echo(
        r#"
version = 2
parameter "p" {
  type = "string"
  option {
    name = "A"
    value = "a"
    colour = "red"
  }
}
agent "main" {
  shell = "zsh"
}
echo {
  steps = 3
}
terraform {}
"#,
    );
    let all = errors(&source);
    let found: Vec<_> = all.iter().map(|e| (e.path.as_str(), e.message.split(';').next().unwrap())).collect();
    assert_eq!(
        found,
        [
            ("warmspace.hcl", r#"unknown key "version""#),
            (r#"parameter "p" › option #1"#, r#"unknown key "colour""#),
            (r#"agent "main""#, r#"unknown key "shell""#),
            ("echo", r#"unknown key "steps""#),
            ("warmspace.hcl", r#"unknown key "terraform""#),
        ]
    );
    assert!(all[0].message.ends_with("expected one of: provisioner, claim, parameter, preset, agent, exec, echo"));
}

#[test]
fn attributes_and_blocks_are_not_interchangeable() {
    let e = error(&echo("preset \"p\" {\n prebuilds = { instances = 1 }\n}"));
    assert_eq!(e.path, r#"preset "p" › prebuilds"#);
    assert!(e.message.contains("is a block"), "{e}");
    let e = error(&echo("agent \"a\" {\n env {\n }\n}"));
    assert_eq!(e.path, r#"agent "a" › env"#);
    assert!(e.message.contains("is an attribute"), "{e}");
}

#[test]
fn single_blocks_may_not_repeat() {
    let source =
        echo("parameter \"n\" {\n type = \"number\"\n validation {\n min = 1\n }\n validation {\n max = 2\n }\n}");
    let e = error(&source);
    assert_eq!(e.path, r#"parameter "n" › validation"#);
    assert_eq!(e.message, "only one validation block is allowed");

    let e = error(&with_prebuilds("instances = 1\n}\nprebuilds {\ninstances = 2"));
    assert_eq!(e.path, r#"preset "us-small" › prebuilds"#);

    let e = error("provisioner = \"exec\"\nexec {\n start = \"a\"\n}\nexec {\n start = \"b\"\n}");
    assert_eq!((e.path.as_str(), e.message.as_str()), ("exec", "only one exec block is allowed"));
}

#[test]
fn labels() {
    assert_eq!(error(&echo("preset \"\" {}")).message, "a preset needs a name");
    let e = error(&echo("preset {}"));
    assert_eq!(e.path, "preset");
    assert!(e.message.contains("exactly one label"), "{e}");
    assert_eq!(error(&echo("agent \"a\" \"b\" {}")).path, "agent");
    let scheduling = r#"
instances = 1
scheduling "x" {
  timezone = "UTC"
  schedule {
    cron      = "* * * * *"
    instances = 1
  }
}"#;
    let e = error(&with_prebuilds(scheduling));
    assert_eq!(e.path, r#"preset "us-small" › prebuilds › scheduling"#);
    assert_eq!(e.message, "a scheduling block takes no label");

    let all = errors(&echo(
        r#"
parameter "p" { type = "bool" }
parameter "p" { type = "bool" }
agent "a" {}
agent "a" {}
"#,
    ));
    let paths: Vec<_> = all.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, [r#"parameter "p""#, r#"agent "a""#]);
    assert!(all[0].message.contains("another parameter is called \"p\""), "{}", all[0]);
}

#[test]
fn missing_provisioner() {
    let e = error("claim = \"rebuild\"");
    assert_eq!(e.path, "provisioner");
    assert_eq!(e.message, "required: one of echo, exec or terraform");
}

#[test]
fn unknown_provisioner_and_claim() {
    let all = errors("provisioner = \"docker\"\nclaim = \"steal\"");
    assert_eq!(all[0].path, "provisioner");
    assert_eq!(all[0].message, r#"expected "echo", "exec" or "terraform", got the string "docker""#);
    assert_eq!(all[1].path, "claim");
    assert_eq!(all.len(), 2);
}

#[test]
fn wrong_value_types_name_the_field_and_the_type() {
    let e = error(&echo("parameter \"p\" {\n type = \"string\"\n mutable = \"yes\"\n}"));
    assert_eq!(e.path, r#"parameter "p" › mutable"#);
    assert_eq!(e.message, r#"expected a bool (true or false), got the string "yes""#);

    let e = error(&with_prebuilds("instances = 1.5"));
    assert_eq!(e.path, r#"preset "us-small" › prebuilds › instances"#);
    assert_eq!(e.message, "expected a whole number >= 0, got 1.5");

    let e = error(&with_prebuilds("instances = \"3\""));
    assert_eq!(e.message, r#"expected a whole number >= 0, got the string "3""#);

    let e = error(&echo("parameter \"n\" {\n type = \"number\"\n default = \"2\"\n}"));
    assert_eq!(e.path, r#"parameter "n" › default"#);
    assert_eq!(e.message, r#"expected a number, got the string "2""#);
}

#[test]
fn expressions_are_evaluated_but_may_not_refer_to_anything() {
    // Arithmetic is fine: 2 * 3 instances; 6 / 2 is the float 3, still whole.
    let manifest = parse(&with_prebuilds("instances = 2 * 3\nexpiration_policy {\n ttl = 6 / 2\n}")).unwrap();
    let pool = manifest.presets[0].prebuilds.as_ref().unwrap();
    assert_eq!((pool.instances, pool.ttl_seconds), (6, Some(3)));

    let e = error(&with_prebuilds("instances = count"));
    assert_eq!(e.path, r#"preset "us-small" › prebuilds › instances"#);
    assert!(e.message.starts_with("not a constant value"), "{e}");
    assert!(error(&echo("agent \"a\" {\n startup_script = file(\"x\")\n}")).message.contains("undefined function"));
}

#[test]
fn parameter_types_and_names() {
    let e = error(&echo("parameter \"p\" {\n display_name = \"P\"\n}"));
    assert_eq!((e.path.as_str(), e.message.as_str()), (r#"parameter "p" › type"#, "required"));
    let e = error(&echo("parameter \"p\" {\n type = \"map\"\n}"));
    assert_eq!(e.path, r#"parameter "p" › type"#);
    assert!(e.message.contains(r#""list(string)""#), "{e}");

    for bad in ["1st", "_x", "a b", "é"] {
        let e = error(&echo(&format!("parameter \"{bad}\" {{\n type = \"bool\"\n}}")));
        assert_eq!(e.path, format!("parameter \"{bad}\""));
    }
    parse(&echo("parameter \"Disk_size-GB2\" {\n type = \"bool\"\n}")).unwrap();
}

#[test]
fn default_not_among_options() {
    let source = DESIGN.replace(r#"default      = "us""#, r#"default      = "eu-north""#);
    let e = error(&source);
    assert_eq!(e.path, r#"parameter "region" › default"#);
    assert_eq!(e.message, r#""eu-north" is not one of the options: us, eu"#);
}

#[test]
fn option_values_have_the_type_and_are_unique() {
    let options = |a: &str, b: &str| {
        echo(&format!(
            r#"
parameter "n" {{
  type = "number"
  option {{
    name  = "A"
    value = {a}
  }}
  option {{
    name  = "{b}"
    value = 2
  }}
}}"#
        ))
    };
    let e = error(&options("\"one\"", "B"));
    assert_eq!(e.path, r#"parameter "n" › option #1 › value"#);
    assert_eq!(e.message, r#"expected a number, got the string "one""#);

    let all = errors(&options("2.0", "A"));
    let found: Vec<_> = all.iter().map(|e| (e.path.as_str(), e.message.as_str())).collect();
    assert_eq!(
        found,
        [
            (r#"parameter "n" › option #2 › name"#, r#"duplicate option name "A""#),
            (r#"parameter "n" › option #2 › value"#, r#"duplicate option value "2""#),
        ]
    );

    let e =
        error(&echo("parameter \"l\" {\n type = \"list(string)\"\n option {\n name = \"A\"\n value = [\"a\"]\n }\n}"));
    assert_eq!(e.path, r#"parameter "l" › option #1"#);
    assert_eq!(e.message, "a list(string) parameter cannot have options");
}

#[test]
fn validation_rules() {
    let parameter = |kind: &str, body: &str| {
        echo(&format!("parameter \"p\" {{\n type = \"{kind}\"\n validation {{\n{body}\n }}\n}}"))
    };
    let check = |source: String, path: &str, message: &str| {
        let e = error(&source);
        assert_eq!((e.path.as_str(), e.message.as_str()), (path, message), "{source}");
    };
    check(parameter("string", "min = 1"), r#"parameter "p" › validation › min"#, "min is only for number parameters");
    check(
        parameter("number", "regex = \"a\""),
        r#"parameter "p" › validation › regex"#,
        "regex is only for string parameters",
    );
    check(
        parameter("bool", "error = \"no\""),
        r#"parameter "p" › validation › error"#,
        "error is only for string parameters",
    );
    check(
        parameter("number", "min = 5\nmax = 1"),
        r#"parameter "p" › validation › max"#,
        "the maximum 1 is below the minimum 5",
    );
    check(
        parameter("string", "error = \"lowercase please\""),
        r#"parameter "p" › validation › error"#,
        "error needs a regex: it is shown when a value does not match it",
    );
    let e = error(&parameter("string", "regex = \"[a-\""));
    assert_eq!(e.path, r#"parameter "p" › validation › regex"#);
    assert!(e.message.starts_with("not a valid regular expression"), "{e}");

    // A default must pass the validation, with the custom message when there is one.
    let defaulted = |body: &str, default: &str| {
        echo(&format!(
            "parameter \"p\" {{\n type = \"string\"\n default = \"{default}\"\n validation {{\n{body}\n }}\n}}"
        ))
    };
    check(
        defaulted("regex = \"[a-z]+\"", "abc1"),
        r#"parameter "p" › default"#,
        r#""abc1" does not match the pattern [a-z]+"#,
    );
    check(
        defaulted("regex = \"[a-z]+\"\nerror = \"lowercase please\"", "ABC"),
        r#"parameter "p" › default"#,
        "lowercase please",
    );
    let manifest = parse(&defaulted("regex = \"[a-z]+\"", "abc")).unwrap();
    assert_eq!(manifest.parameters[0].validation.as_ref().unwrap().regex.as_deref(), Some("[a-z]+"));

    let e = error(&DESIGN.replace("default = 2", "default = 32"));
    assert_eq!((e.path.as_str(), e.message.as_str()), (r#"parameter "cpus" › default"#, "32 is above the maximum 16"));
}

#[test]
fn list_parameters() {
    let source = r#"
parameter "tags" {
  type    = "list(string)"
  default = ["a", "b"]
}
preset "p" {
  parameters = { tags = ["c"] }
}"#;
    let manifest = parse(&echo(source)).unwrap();
    assert_eq!(manifest.parameters[0].default.as_deref(), Some(r#"["a","b"]"#));
    assert_eq!(manifest.presets[0].parameters["tags"], r#"["c"]"#);
    let e = error(&echo("parameter \"tags\" {\n type = \"list(string)\"\n default = [\"a\", 1]\n}"));
    assert_eq!(e.message, "expected a list of strings, got a list");
}

#[test]
fn preset_values_are_kept_in_canonical_form() {
    let source = r#"
parameter "gpu" { type = "bool" }
preset "p" {
  parameters = { cpus = 4.0, region = "eu", gpu = true }
}
preset "q" {
  parameters = { cpus = "8.0", gpu = "false" }
}"#;
    let manifest = parse(&with_parameters(source)).unwrap();
    let values = |i: usize| manifest.presets[i].parameters.clone().into_iter().collect::<Vec<_>>();
    let strings =
        |pairs: &[(&str, &str)]| pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
    assert_eq!(values(0), strings(&[("cpus", "4"), ("gpu", "true"), ("region", "eu")]));
    assert_eq!(values(1), strings(&[("cpus", "8"), ("gpu", "false")]));
}

#[test]
fn preset_value_for_an_unknown_parameter() {
    let e = error(&with_parameters("preset \"p\" {\n parameters = { region = \"us\", zone = \"a\" }\n}"));
    assert_eq!(e.path, r#"preset "p" › parameters"#);
    assert_eq!(e.message, r#"unknown parameter "zone""#);
}

#[test]
fn preset_value_outside_validation() {
    let e = error(&with_parameters("preset \"p\" {\n parameters = { cpus = 32 }\n}"));
    assert_eq!(e.path, r#"preset "p" › parameters"#);
    assert_eq!(e.message, r#"parameter "cpus": 32 is above the maximum 16"#);

    let all = errors(&with_parameters("preset \"p\" {\n parameters = { region = \"eu-north\", cpus = \"many\" }\n}"));
    let messages: Vec<_> = all.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            r#"parameter "region": "eu-north" is not one of the options: us, eu"#,
            r#"parameter "cpus": "many" is not a number"#,
        ]
    );
}

#[test]
fn presets_are_not_checked_against_broken_parameters() {
    // The parameter's own mistake is reported once, not again for the preset.
    let source = echo(
        "parameter \"n\" {\n type = \"number\"\n default = \"x\"\n}\npreset \"p\" {\n parameters = { n = \"y\" }\n}",
    );
    assert_eq!(error(&source).path, r#"parameter "n" › default"#);
}

#[test]
fn preset_text_limits() {
    let long = |n: usize| "é".repeat(n);
    parse(&echo(&format!("preset \"p\" {{\n description = \"{}\"\n icon = \"{}\"\n}}", long(128), long(256)))).unwrap();
    let all =
        errors(&echo(&format!("preset \"p\" {{\n description = \"{}\"\n icon = \"{}\"\n}}", long(129), long(257))));
    let found: Vec<_> = all.iter().map(|e| (e.path.as_str(), e.message.as_str())).collect();
    assert_eq!(
        found,
        [
            (r#"preset "p" › description"#, "must be at most 128 characters, not 129"),
            (r#"preset "p" › icon"#, "must be at most 256 characters, not 257"),
        ]
    );
}

#[test]
fn two_default_presets() {
    let e = error(&echo(
        "preset \"a\" {\n default = true\n}\npreset \"b\" {\n default = false\n}\npreset \"c\" {\n default = true\n}",
    ));
    assert_eq!(e.path, r#"preset "c" › default"#);
    assert_eq!(e.message, r#"only one preset may be the default; preset "a" already is"#);
}

#[test]
fn negative_instances() {
    let e = error(&with_prebuilds("instances = -1"));
    assert_eq!(e.path, r#"preset "us-small" › prebuilds › instances"#);
    assert_eq!(e.message, "expected a whole number >= 0, got -1");

    let e = error(&with_prebuilds("instances = 1\nexpiration_policy {\n ttl = -5\n}"));
    assert_eq!(e.path, r#"preset "us-small" › prebuilds › expiration_policy › ttl"#);

    let e = error(&with_schedules(&["* 8 * * *"]).replace("instances = 1", "instances = -3"));
    assert_eq!(e.path, r#"preset "us-small" › prebuilds › scheduling › schedule #1 › instances"#);
}

#[test]
fn prebuilds_need_instances() {
    let e = error(&with_prebuilds(""));
    assert_eq!((e.path.as_str(), e.message.as_str()), (r#"preset "us-small" › prebuilds › instances"#, "required"));
}

#[test]
fn bad_timezone() {
    let e = error(&with_schedules(&["* 8 * * *"]).replace("America/New_York", "America/Springfield"));
    assert_eq!(e.path, r#"preset "us-small" › prebuilds › scheduling › timezone"#);
    assert_eq!(e.message, r#""America/Springfield" is not an IANA time zone name (such as America/New_York)"#);
}

#[test]
fn scheduling_needs_a_timezone_and_a_schedule() {
    let all = errors(&with_prebuilds("instances = 1\nscheduling {\n}"));
    let found: Vec<_> = all.iter().map(|e| (e.path.as_str(), e.message.as_str())).collect();
    let at = r#"preset "us-small" › prebuilds › scheduling"#;
    assert_eq!(found, [(&*format!("{at} › timezone"), "required"), (at, "at least one schedule block is required")]);
}

#[test]
fn cron_with_four_fields() {
    let e = error(&with_schedules(&["* 8-18 * *"]));
    assert_eq!(e.path, r#"preset "us-small" › prebuilds › scheduling › schedule #1 › cron"#);
    assert_eq!(e.message, r#""* 8-18 * *": expected 5 fields (minute hour day-of-month month day-of-week), got 4"#);
}

#[test]
fn cron_with_six_fields() {
    let e = error(&with_schedules(&["* 8-18 * * 1-5", "0 * 8-18 * * 1-5"]));
    assert_eq!(e.path, r#"preset "us-small" › prebuilds › scheduling › schedule #2 › cron"#);
    assert!(e.message.ends_with("got 6"), "{e}");
}

#[test]
fn two_overlapping_schedules() {
    let e = error(&with_schedules(&["* 8-18 * * 1-5", "* 8-14 * * 6", "* 18-20 * * 5"]));
    assert_eq!(e.path, r#"preset "us-small" › prebuilds › scheduling › schedule #3 › cron"#);
    assert_eq!(
        e.message,
        r#""* 18-20 * * 5" overlaps schedule #1 ("* 8-18 * * 1-5"): no two schedules may cover the same minute"#
    );
}

#[test]
fn agent_name_with_an_underscore() {
    let e = error(&echo("agent \"my_agent\" {}"));
    assert_eq!(e.path, r#"agent "my_agent""#);
    assert!(e.message.contains("lowercase letters, digits and single hyphens"), "{e}");
}

#[test]
fn agent_name_with_a_double_hyphen() {
    let e = error(&echo("agent \"my--agent\" {}"));
    assert_eq!(e.path, r#"agent "my--agent""#);
    for bad in ["-main", "main-", "Main", ""] {
        assert_eq!(error(&echo(&format!("agent \"{bad}\" {{}}"))).path, format!("agent \"{bad}\""));
    }
    parse(&echo("agent \"dev-box-2\" {}")).unwrap();
}

#[test]
fn startup_scripts_may_be_heredocs() {
    let source = "agent \"main\" {\n  startup_script = <<-EOT\n    set -e\n    make dev\n  EOT\n}\n";
    let manifest = parse(&echo(source)).unwrap();
    assert_eq!(manifest.agents[0].startup_script, "set -e\nmake dev\n");
}

#[test]
fn agent_env_values_are_strings() {
    let manifest = parse(&echo("agent \"a\" {\n env = { PORT = 8080, DEBUG = true, NAME = \"x\" }\n}")).unwrap();
    let env: Vec<_> = manifest.agents[0].env.iter().map(|(k, v)| (&**k, &**v)).collect();
    assert_eq!(env, [("DEBUG", "true"), ("NAME", "x"), ("PORT", "8080")]);
    let e = error(&echo("agent \"a\" {\n env = { PATH = [\"/bin\"] }\n}"));
    assert_eq!(e.path, r#"agent "a" › env"#);
    assert_eq!(e.message, r#""PATH": expected a string, got a list"#);
}

#[test]
fn exec_block_under_echo() {
    let e = error("provisioner = \"echo\"\nexec {\n start = \"start.sh\"\n}");
    assert_eq!(e.path, "exec");
    assert_eq!(e.message, r#"an exec block is only allowed with provisioner = "exec", not "echo""#);
    let e = error(&DESIGN.replace(r#"provisioner = "exec""#, r#"provisioner = "terraform""#));
    assert_eq!(e.path, "exec");
    let e = error(&format!("provisioner = \"exec\"\nexec {{\n start = \"s\"\n}}\n{ECHO_BLOCK}"));
    assert_eq!(e.path, "echo");
}

#[test]
fn exec_block_rules() {
    let exec = |body: &str| format!("provisioner = \"exec\"\nexec {{\n{body}\n}}");
    let check = |source: String, path: &str, message: &str| {
        let e = error(&source);
        assert_eq!((e.path.as_str(), e.message.as_str()), (path, message), "{source}");
    };
    check("provisioner = \"exec\"".into(), "exec", r#"an exec block is required with provisioner = "exec""#);
    check(exec("stop = \"stop.sh\""), "exec › start", "required");
    check(exec("start = \"/bin/start\""), "exec › start", r#""/bin/start" must be relative to the template's root"#);
    check(
        exec("start = \"s\"\ndelete = \"scripts/../../rm.sh\""),
        "exec › delete",
        r#""scripts/../../rm.sh" must not contain "..": scripts live inside the template"#,
    );
    check(exec("start = \"s\"\ntimeout = \"0s\""), "exec › timeout", "must be longer than 0");
    let e = error(&exec("start = \"s\"\ntimeout = \"soon\""));
    assert_eq!(e.path, "exec › timeout");
    assert!(e.message.starts_with(r#""soon" is not a duration"#), "{e}");
    // ".." as part of a name is not a parent directory.
    parse(&exec("start = \"scripts/start..sh\"\ntimeout = \"1h 30m\"")).unwrap();
}

#[test]
fn echo_block_rules() {
    let all =
        errors(&echo("echo {\n duration_ms = -1\n fail_on = [\"start\", \"restart\"]\n replace_on_claim = [1]\n}"));
    let found: Vec<_> = all.iter().map(|e| (e.path.as_str(), e.message.as_str())).collect();
    assert_eq!(
        found,
        [
            ("echo › duration_ms", "expected a whole number >= 0, got -1"),
            ("echo › fail_on", r#""restart" is not a transition; expected start, stop or delete"#),
            ("echo › replace_on_claim", "expected a list of strings, got a list"),
        ]
    );
}

#[test]
fn several_problems_are_all_reported_in_file_order() {
    let source = r#"
claim = "steal"
parameter "region" {
  type    = "string"
  default = "mars"
  option {
    name  = "US"
    value = "us"
  }
}
preset "a" {
  default    = true
  parameters = { zone = "z" }
  prebuilds {
    instances = -1
    scheduling {
      timezone = "Nowhere/City"
      schedule {
        cron      = "* * * *"
        instances = 1
      }
    }
  }
}
preset "b" {
  default = true
}
agent "my_agent" {}
exec {
  start = "../start.sh"
}
"#;
    let paths: Vec<_> = errors(source).into_iter().map(|e| e.path).collect();
    assert_eq!(
        paths,
        [
            "claim",
            r#"parameter "region" › default"#,
            r#"preset "a" › parameters"#,
            r#"preset "a" › prebuilds › instances"#,
            r#"preset "a" › prebuilds › scheduling › timezone"#,
            r#"preset "a" › prebuilds › scheduling › schedule #1 › cron"#,
            r#"preset "b" › default"#,
            r#"agent "my_agent""#,
            "exec › start",
            // Missing things are found at the end of their block.
            "provisioner",
        ]
    );
}

#[test]
fn errors_display_path_and_message() {
    let e = ManifestError { path: "exec › timeout".into(), message: "must be longer than 0".into() };
    assert_eq!(e.to_string(), "exec › timeout: must be longer than 0");
}

/// The agent-name rule, written out independently of the regex.
fn valid_agent_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// Cron expressions whose fields are `*`, a single value or a range.
fn weekly_cron() -> impl Strategy<Value = String> {
    let field = |max: u32| {
        prop_oneof![
            Just("*".to_owned()),
            (0..max).prop_map(|a| a.to_string()),
            (0..max, 0..max).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        ]
    };
    (field(60), field(24), field(7)).prop_map(|(m, h, d)| format!("{m} {h} * * {d}"))
}

proptest! {
    #[test]
    fn agent_names_are_accepted_exactly_when_they_follow_the_rule(name in "[ab09_-]{0,6}") {
        let parsed = parse(&echo(&format!("agent \"{name}\" {{}}")));
        prop_assert_eq!(parsed.is_ok(), valid_agent_name(&name), "{:?}", parsed);
    }

    #[test]
    fn schedules_are_rejected_exactly_when_they_overlap(a in weekly_cron(), b in weekly_cron()) {
        let overlap = Schedule::parse(&a).unwrap().overlaps(&Schedule::parse(&b).unwrap());
        match parse(&with_schedules(&[&a, &b])) {
            Ok(_) => prop_assert!(!overlap, "{} and {} overlap", a, b),
            Err(all) => {
                prop_assert!(overlap, "{:?}", all);
                prop_assert_eq!(all.len(), 1);
                prop_assert!(all[0].path.ends_with("schedule #2 › cron"));
            }
        }
    }

    #[test]
    fn a_number_default_is_accepted_exactly_within_its_bounds(
        a in -20i32..20, b in -20i32..20, default in -25i32..25,
    ) {
        let (min, max) = (a.min(b), a.max(b));
        let source = echo(&format!(
            r#"
parameter "n" {{
  type    = "number"
  default = {default}
  validation {{
    min = {min}
    max = {max}
  }}
}}"#
        ));
        let parsed = parse(&source);
        prop_assert_eq!(parsed.is_ok(), (min..=max).contains(&default), "{:?}", parsed);
    }
}

#[test]
fn numbers_must_fit_the_columns_that_store_them() {
    // A pool size is stored in a 32-bit integer: no wrap-around into a negative count.
    let e = error(&with_prebuilds("instances = 4294967295"));
    assert_eq!(e.path, r#"preset "us-small" › prebuilds › instances"#);
    assert!(e.message.contains("a whole number <= 2147483647"), "{e}");
    assert!(parse(&with_prebuilds("instances = 2147483647")).is_ok());
    // A TTL must stay within what timestamp arithmetic can hold.
    let e = error(&with_prebuilds("instances = 1\nexpiration_policy {\n ttl = 9223372036854775807\n}"));
    assert_eq!(e.path, r#"preset "us-small" › prebuilds › expiration_policy › ttl"#);
    let e = error(&with_schedules(&["* 8-18 * * 1-5"]).replace("instances = 1\n}", "instances = 3000000000\n}"));
    assert!(e.path.ends_with("instances"), "{e}");
}

/// The key list the documentation is checked against names every block the
/// parser reads: each nested block has its own entry, and every entry but
/// the top level is a block some other entry names.
#[test]
fn manifest_keys_describe_every_block() {
    let keys = manifest_keys();
    let blocks: Vec<&str> = BLOCKS.iter().map(|(block, _)| *block).collect();
    for key in keys.iter().filter(|k| k.is_block) {
        let path = if key.block.is_empty() { key.name.to_owned() } else { format!("{} › {}", key.block, key.name) };
        assert!(blocks.contains(&path.as_str()), "block {path:?} has no entry of its own");
    }
    for block in blocks.iter().filter(|b| !b.is_empty()) {
        let (parent, name) = block.rsplit_once(" › ").unwrap_or(("", block));
        assert!(keys.iter().any(|k| k.is_block && k.block == parent && k.name == name), "{block:?} is nested nowhere");
    }
    assert!(keys.iter().any(|k| k.block == "preset › prebuilds › scheduling › schedule" && k.name == "cron"));
}

/// Where a NUL character can hide in a manifest, and the path its error names.
const NUL_PLACES: &[(&str, &str)] = &[
    ("preset \"p\" {\n  description = \"{}\"\n}\n", "preset \"p\" › description"),
    ("preset \"p\" {\n  parameters = { region = \"{}\" }\n}\n", "preset \"p\" › parameters"),
    ("preset \"p\" {\n  parameters = { \"{}\" = \"us\" }\n}\n", "preset \"p\" › parameters"),
    ("agent \"main\" {\n  env = { A = \"{}\" }\n}\n", "agent \"main\" › env"),
    ("agent \"main\" {\n  startup_script = \"{}\"\n}\n", "agent \"main\" › startup_script"),
    ("echo {\n  replace_on_claim = [\"{}\"]\n}\n", "echo › replace_on_claim"),
    ("preset \"{}\" {\n}\n", "preset \"{}\""),
];

proptest! {
    /// PostgreSQL cannot store a NUL: a manifest holding one anywhere is
    /// refused naming the field, written raw or as the escape `\u0000`.
    #[test]
    fn a_nul_character_in_any_string_is_refused_naming_its_field(
        place in 0..NUL_PLACES.len(),
        before in "[a-z]{0,4}",
        after in "[a-z]{0,4}",
        escaped in any::<bool>(),
    ) {
        let (template, path) = NUL_PLACES[place];
        let nul = if escaped { "\\u0000" } else { "\0" };
        let text = format!("{before}{nul}{after}");
        let source = with_parameters(&template.replace("{}", &text));
        let all = errors(&source);
        let shown = format!("{before}\\u0000{after}");
        let path = path.replace("{}", &shown);
        prop_assert!(
            all.iter().any(|e| e.path == path && e.message.contains("NUL")),
            "{:?} not named in {:#?}", path, all
        );
    }
}

const APPS: &str = r#"
agent "main" {
  app "web" {
    display_name = "Web"
    url          = "http://localhost:3000"
    healthcheck {
      url       = "http://localhost:3000/healthz"
      interval  = "5s"
      threshold = 3
    }
  }
  app "docs" {
    url = "https://localhost:8443/docs"
  }
  devcontainer "api" {
    workspace_folder = "/home/me/api"
    config_path      = ".devcontainer/devcontainer.json"
  }
  devcontainer "plain" {
    workspace_folder = "src"
  }
}
"#;

#[test]
fn agents_declare_apps_and_dev_containers() {
    let manifest = parse(&echo(APPS)).unwrap();
    let agent = &manifest.agents[0];
    assert_eq!(
        agent.apps,
        [
            App {
                name: "web".into(),
                display_name: "Web".into(),
                url: "http://localhost:3000".into(),
                healthcheck: Some(Healthcheck {
                    url: "http://localhost:3000/healthz".into(),
                    interval: Duration::from_secs(5),
                    threshold: 3,
                }),
            },
            App {
                name: "docs".into(),
                display_name: "docs".into(),
                url: "https://localhost:8443/docs".into(),
                healthcheck: None,
            },
        ]
    );
    assert_eq!(
        agent.devcontainers,
        [
            Devcontainer {
                name: "api".into(),
                workspace_folder: "/home/me/api".into(),
                config_path: Some(".devcontainer/devcontainer.json".into()),
            },
            Devcontainer { name: "plain".into(), workspace_folder: "src".into(), config_path: None },
        ]
    );
    // What the server stores and the agent receives reads back the same.
    let json = serde_json::to_string(agent).unwrap();
    assert_eq!(&serde_json::from_str::<Agent>(&json).unwrap(), agent);
    // A health check's interval and threshold have defaults.
    let manifest = parse(&echo(
        "agent \"a\" {\n app \"x\" {\n url = \"http://h\"\n healthcheck {\n url = \"http://h/\"\n }\n }\n}",
    ))
    .unwrap();
    let check = manifest.agents[0].apps[0].healthcheck.as_ref().unwrap();
    assert_eq!((check.interval, check.threshold), (Duration::from_secs(5), 3));
}

#[test]
fn bad_apps_and_dev_containers_are_named_in_their_errors() {
    let agent = |body: &str| echo(&format!("agent \"main\" {{\n{body}\n}}"));
    let check = |source: String, path: &str, message: &str| {
        let e = error(&source);
        assert_eq!(e.path, path, "{source}");
        assert!(e.message.contains(message), "{source}: {}", e.message);
    };
    check(agent("app \"web\" {}"), r#"agent "main" › app "web" › url"#, "required");
    check(
        agent("app \"web\" {\n url = \"localhost:3000\"\n}"),
        r#"agent "main" › app "web" › url"#,
        "http or https URL",
    );
    check(agent("app \"web\" {\n url = \"not a url\"\n}"), r#"agent "main" › app "web" › url"#, "is not a URL");
    check(agent("app \"Web\" {\n url = \"http://h\"\n}"), r#"agent "main" › app "Web""#, "an app name may contain");
    check(
        agent("app \"web\" {\n url = \"http://h\"\n port = 3\n}"),
        r#"agent "main" › app "web""#,
        r#"unknown key "port"; expected one of: display_name, url, healthcheck"#,
    );
    let health = |body: &str| agent(&format!("app \"web\" {{\n url = \"http://h\"\n healthcheck {{\n{body}\n }}\n}}"));
    let at = r#"agent "main" › app "web" › healthcheck"#;
    check(health("interval = \"5s\""), &format!("{at} › url"), "required");
    check(health("url = \"http://h\"\n interval = \"often\""), &format!("{at} › interval"), "is not a duration");
    check(health("url = \"http://h\"\n interval = \"1ms\""), &format!("{at} › interval"), "between 100ms and 1h");
    check(health("url = \"http://h\"\n threshold = 0"), &format!("{at} › threshold"), "between 1 and 100");
    check(health("url = \"http://h\"\n threshold = \"x\""), &format!("{at} › threshold"), "expected a whole number");
    check(
        agent(
            "app \"web\" {\n url = \"http://h\"\n healthcheck {\n url = \"http://h\"\n }\n healthcheck {\n url = \"http://h\"\n }\n}",
        ),
        r#"agent "main" › app "web" › healthcheck"#,
        "only one healthcheck block",
    );
    check(agent("app {\n url = \"http://h\"\n}"), r#"agent "main" › app"#, "exactly one label");
    check(
        agent("app \"web\" {\n url = \"http://h\"\n}\napp \"web\" {\n url = \"http://h\"\n}"),
        r#"agent "main" › app "web""#,
        "another app is called \"web\"",
    );
    // Apps are named within the workspace, whichever agent serves them.
    check(
        echo(
            "agent \"a\" {\n app \"web\" {\n url = \"http://h\"\n }\n}\nagent \"b\" {\n app \"web\" {\n url = \"http://h\"\n }\n}",
        ),
        r#"agent "b" › app"#,
        r#"agent "a" has an app called "web" too"#,
    );
    let devcontainer = |body: &str| agent(&format!("devcontainer \"api\" {{\n{body}\n}}"));
    check(devcontainer(""), r#"agent "main" › devcontainer "api" › workspace_folder"#, "required");
    check(
        devcontainer("workspace_folder = \" \""),
        r#"agent "main" › devcontainer "api" › workspace_folder"#,
        "must not be empty",
    );
    check(
        devcontainer("workspace_folder = \"x\"\n config_path = \"\""),
        r#"agent "main" › devcontainer "api" › config_path"#,
        "must not be empty",
    );
    check(
        devcontainer("workspace_folder = 3"),
        r#"agent "main" › devcontainer "api" › workspace_folder"#,
        "expected a string",
    );
    check(
        agent("devcontainer \"my_box\" {\n workspace_folder = \"x\"\n}"),
        r#"agent "main" › devcontainer "my_box""#,
        "a dev container name may contain",
    );
}
