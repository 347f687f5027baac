//! Synthetic values for one column, as a SQL expression of the row number
//! `i` (a `bigint` from `generate_series`): pure, so the whole load is one
//! server-side `INSERT … SELECT` per chunk and nothing crosses the wire.

/// What the generator needs to know about a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// `format_type()`: the declared type, used as the final cast.
    pub declared: String,
    /// The base type's name (`int4`, `varchar`, …; a domain's base type).
    pub base: String,
    /// `pg_type.typtype` of the base type (`e` for enums).
    pub typtype: String,
    /// `pg_type.typcategory` of the base type (`A` for arrays).
    pub category: String,
    /// `NOT NULL`.
    pub not_null: bool,
    /// Has a default (a sequence, `now()`, …).
    pub has_default: bool,
}

/// The expression for `column`; `distinct` asks for a different value on
/// every row (the column is part of a unique key). `Err` says why there is none.
pub fn expression(column: &Column, distinct: bool) -> Result<String, String> {
    let cast = &column.declared;
    let bounded = cast.contains('(');
    let raw = match column.base.as_str() {
        "int2" if distinct => "i".to_string(),
        "int2" => "i % 30000".into(),
        "int4" | "int8" | "oid" => "i".into(),
        "numeric" if distinct => "i".into(),
        "numeric" => "(i % 1000) + 0.5".into(),
        "float4" | "float8" => "i * 1.5".into(),
        "text" | "varchar" | "citext" if !bounded => {
            let prefix: String = column.name.chars().take(12).collect();
            format!("'{}-' || i", prefix.replace('\'', "''"))
        }
        "text" | "varchar" | "bpchar" | "citext" | "name" => "i::text".into(),
        "bool" if distinct => return Err("a unique boolean column has only two values".into()),
        "bool" => "i % 2 = 0".into(),
        "timestamp" | "timestamptz" => "timestamp '2020-01-01' + i * interval '1 second'".into(),
        "date" => "date '2000-01-01' + i::int".into(),
        "time" | "timetz" => "time '00:00' + (i % 86400) * interval '1 second'".into(),
        "interval" => "i * interval '1 second'".into(),
        "uuid" => "md5(i::text)::uuid".into(),
        "json" | "jsonb" => "jsonb_build_object('n', i)".into(),
        "bytea" => "decode(md5(i::text), 'hex')".into(),
        "inet" | "cidr" => "'10.0.0.0'::inet + i".into(),
        _ if column.typtype == "e" => {
            format!(
                "(enum_range(NULL::{cast}))[1 + (i % cardinality(enum_range(NULL::{cast})))::int]"
            )
        }
        _ if column.category == "A" => "'{}'".into(),
        other => return Err(format!("no generator for type {other}")),
    };
    Ok(format!("({raw})::{cast}"))
}

/// A `CHECK (col IN ('a', 'b'))` as the server prints it
/// (`(col = ANY (ARRAY['a'::text, 'b'::text]))`): the column and an
/// expression picking among the allowed values, so the rows satisfy it.
pub fn allowed_values(check: &str) -> Option<(String, String)> {
    let inner = check.trim().trim_start_matches('(').trim_end_matches(')');
    let (column, rest) = inner.split_once(" = ANY (")?;
    let array = rest.strip_suffix(')').unwrap_or(rest).trim();
    if !array.starts_with("ARRAY[") || !array.ends_with(']') {
        return None;
    }
    let column = column.trim().trim_start_matches('(');
    let name = match column.strip_prefix('"').and_then(|c| c.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None if column.chars().all(|c| c.is_alphanumeric() || c == '_') => column.to_string(),
        None => return None, // an expression, not a plain column
    };
    Some((
        name,
        format!("({array})[1 + (i % cardinality({array}))::int]"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(base: &str, declared: &str) -> Column {
        Column {
            name: "c".into(),
            declared: declared.into(),
            base: base.into(),
            typtype: "b".into(),
            category: "N".into(),
            not_null: true,
            has_default: false,
        }
    }

    #[test]
    fn values_are_cast_to_the_declared_type() {
        assert_eq!(
            expression(&column("int8", "bigint"), true).unwrap(),
            "(i)::bigint"
        );
        assert_eq!(
            expression(&column("varchar", "character varying(20)"), false).unwrap(),
            "(i::text)::character varying(20)"
        );
        assert_eq!(
            expression(&column("text", "text"), false).unwrap(),
            "('c-' || i)::text"
        );
    }

    #[test]
    fn an_in_list_check_gives_the_allowed_values() {
        let (col, expr) =
            allowed_values("((status = ANY (ARRAY['open'::text, 'closed'::text])))").unwrap();
        assert_eq!(col, "status");
        assert!(expr.starts_with("(ARRAY['open'::text, 'closed'::text])[1 + "));
        assert_eq!(allowed_values("((amount > (0)::numeric))"), None);
    }

    #[test]
    fn a_unique_boolean_and_unknown_types_are_refused_with_the_reason() {
        assert!(expression(&column("bool", "boolean"), true)
            .unwrap_err()
            .contains("two values"));
        assert!(expression(&column("tsvector", "tsvector"), false)
            .unwrap_err()
            .contains("tsvector"));
    }
}
