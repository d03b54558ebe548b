//! Kafka's own `SslPrincipalMapperTest` cases, then the edges of Java's `replaceAll`.

use super::*;

#[test]
fn kafka_valid_rules_parse() {
    for rules in [
        "DEFAULT",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, DEFAULT",
        "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/",
        "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L",
        "RULE:^cn=(.?),ou=(.?),dc=(.?),dc=(.?)$/$1@$2/U",
        "RULE:^CN=([^,ADEFLTU,]+)(,.*|$)/$1/",
        "RULE:^CN=([^,DEFAULT,]+)(,.*|$)/$1/",
    ] {
        PrincipalMapper::parse(rules).unwrap_or_else(|e| panic!("{rules}: {e}"));
    }
}

#[test]
fn kafka_invalid_rules_are_refused() {
    for rules in [
        "default",
        "DEFAUL",
        "DEFAULT/L",
        "DEFAULT/U",
        "RULE:CN=(.*?),OU=ServiceUsers.*/$1",
        "rule:^CN=(.*?),OU=ServiceUsers.*$/$1/",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L/U",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/L",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/U",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/LU",
    ] {
        assert!(
            matches!(
                PrincipalMapper::parse(rules),
                Err(RulesError::Invalid { .. })
            ),
            "{rules}"
        );
    }
    let error = PrincipalMapper::parse("RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L/U").unwrap_err();
    assert_eq!(
        error.to_string(),
        "ssl.principal.mapping.rules: invalid rule: `RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L/U`, \
         unmatched substring: `/U`"
    );
    // Valid for Kafka, but Java-only regex syntax: refused at start-up, not at login.
    assert!(matches!(
        PrincipalMapper::parse("RULE:^CN=(?<=x)(.*)$/$1/"),
        Err(RulesError::Pattern { .. })
    ));
}

#[test]
fn kafka_mapping_examples() {
    let rules = [
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L",
        "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L",
        "RULE:^cn=(.*?),ou=(.*?),dc=(.*?),dc=(.*?)$/$1@$2/U",
        "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U",
        "DEFAULT",
    ]
    .join(", ");
    let mapper = PrincipalMapper::parse(&rules).unwrap();
    assert_eq!(
        mapper.name("CN=Duke,OU=ServiceUsers,O=Org,C=US").unwrap(),
        "duke"
    );
    assert_eq!(
        mapper
            .name("CN=Duke,OU=SME,O=mycp,L=Fulton,ST=MD,C=US")
            .unwrap(),
        "duke@sme"
    );
    assert_eq!(
        mapper.name("cn=duke,ou=sme,dc=mycp,dc=com").unwrap(),
        "DUKE@SME"
    );
    assert_eq!(
        mapper
            .name("cN=duke,OU=JavaSoft,O=Sun Microsystems")
            .unwrap(),
        "DUKE"
    );
    assert_eq!(
        mapper.name("OU=JavaSoft,O=Sun Microsystems,C=US").unwrap(),
        "OU=JavaSoft,O=Sun Microsystems,C=US"
    );
}

fn splits(expected: &str, rules: &str) {
    let mapper = PrincipalMapper::parse(rules).unwrap_or_else(|e| panic!("{rules}: {e}"));
    assert_eq!(
        mapper.to_string(),
        format!("SslPrincipalMapper(rules = {expected})"),
        "{rules}"
    );
}

#[test]
fn kafka_rules_splitting() {
    splits("[]", "");
    splits("[DEFAULT]", "DEFAULT");
    splits("[RULE:/]", "RULE://");
    splits("[RULE:/.*]", "RULE:/.*/");
    splits("[RULE:/.*/L]", "RULE:/.*/L");
    splits("[RULE:/, DEFAULT]", "RULE://,DEFAULT");
    splits("[RULE:/, DEFAULT]", "  RULE:// ,  DEFAULT  ");
    splits(
        "[RULE:   /     , DEFAULT]",
        "  RULE:   /     / ,  DEFAULT  ",
    );
    splits(
        "[RULE:  /     /U, DEFAULT]",
        "  RULE:  /     /U   ,DEFAULT  ",
    );
    splits(
        "[RULE:([A-Z]*)/$1/U, RULE:([a-z]+)/$1, DEFAULT]",
        "  RULE:([A-Z]*)/$1/U   ,RULE:([a-z]+)/$1/,   DEFAULT  ",
    );
    // empty rules are ignored
    splits("[]", ",   , , ,      , , ,   ");
    splits("[RULE:/, DEFAULT]", ",,RULE://,,,DEFAULT,,");
    splits(
        "[RULE: /   , DEFAULT]",
        ",  , RULE: /   /    ,,,   DEFAULT, ,   ",
    );
    splits(
        "[RULE:   /  /U, DEFAULT]",
        "     ,  , RULE:   /  /U    ,,  ,DEFAULT, ,",
    );
    // escape sequences
    splits(r"[RULE:\/\\\(\)\n\t/\/\/]", r"RULE:\/\\\(\)\n\t/\/\//");
    splits(
        r"[RULE:\**\/+/*/L, RULE:\/*\**/**]",
        r"RULE:\**\/+/*/L,RULE:\/*\**/**/",
    );
    // rules rule
    splits(
        r"[RULE:,RULE:,/,RULE:,\//U, RULE:,/RULE:,, RULE:,RULE:,/L,RULE:,/L, RULE:, DEFAULT, /DEFAULT, DEFAULT]",
        r"RULE:,RULE:,/,RULE:,\//U,RULE:,/RULE:,/,RULE:,RULE:,/L,RULE:,/L,RULE:, DEFAULT, /DEFAULT/,DEFAULT",
    );
}

#[test]
fn kafka_comma_with_whitespace() {
    let mapper = PrincipalMapper::parse(r"RULE:^CN=((\\, *|\w)+)(,.*|$)/$1/,DEFAULT").unwrap();
    assert_eq!(
        mapper
            .name(r"CN=Tkac\, Adam,OU=ITZ,DC=geodis,DC=cz")
            .unwrap(),
        r"Tkac\, Adam"
    );
}

#[test]
fn no_matching_rule_and_empty_rules_map_nothing() {
    let mapper = PrincipalMapper::parse("RULE:^CN=(.*),O=acme$/$1/").unwrap();
    assert_eq!(mapper.name("CN=a,O=acme").unwrap(), "a");
    assert_eq!(
        mapper.name("CN=a,O=other").unwrap_err().to_string(),
        "no rules apply to CN=a,O=other, rules SslPrincipalMapper(rules = [RULE:^CN=(.*),O=acme$/$1])"
    );
    assert!(PrincipalMapper::parse("").unwrap().name("CN=a").is_err());
    assert_eq!(
        PrincipalMapper::parse(DEFAULT_RULES)
            .unwrap()
            .name("CN=a")
            .unwrap(),
        "CN=a"
    );
}

#[test]
fn replacement_follows_java_replace_all() {
    let map = |rules: &str, name: &str| PrincipalMapper::parse(rules).unwrap().name(name);
    // References past the last group are literal (Kafka's NiFi escaping); $12 falls
    // back to $1 followed by "2".
    assert_eq!(
        map("RULE:^CN=(.*?),O=(.*)$/$1@$4/", "CN=a,O=b").unwrap(),
        "a@$4"
    );
    assert_eq!(
        map("RULE:^CN=(.*?),O=(.*)$/$12/", "CN=a,O=b").unwrap(),
        "a2"
    );
    assert_eq!(map(r"RULE:^CN=(.*)$/\$1-$1/", "CN=a").unwrap(), "$1-a");
    // No groups: Java has nothing to escape and then fails on "$1".
    assert!(matches!(
        map("RULE:^CN=.*$/$1/", "CN=a"),
        Err(MappingError::Replacement(_))
    ));
    // An unanchored lazy pattern matches the whole name, yet replaceAll replaces
    // each (empty) match, as in Java.
    assert_eq!(map("RULE:(.*?)/-/", "ab").unwrap(), "-a-b-");
    assert_eq!(map("RULE:a*/-/", "aa").unwrap(), "--");
    // A group that did not take part is empty.
    assert_eq!(map("RULE:^(x)?CN=(.*)$/[$1]$2/U", "CN=a").unwrap(), "[]A");
}
