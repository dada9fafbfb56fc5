#!/usr/bin/env python3
"""Renders docs/openapi.json (the API description the server serves at /v1.1/openapi.json) as
docs/api.md, the readable API reference.

    python3 docs/render_api.py           # rewrite docs/api.md
    python3 docs/render_api.py --check   # exit 1 if docs/api.md is not what the document renders to

Python 3.11 standard library only. The document is the source: edit docs/openapi.json, then run
this script and commit both files.

Layout of the reference: §1 is an index of every path and method; each tag of the document is a
numbered section (`x-section`), whose description holds its general text, split into `### §N.M`
subsections; every path carries the number of the section it belongs to (`x-section`) and is
placed among those subsections in number order. Each numbered heading gets a fixed anchor
(`#s9-8` for §9.8), and `§N.M` in the text links to it.
"""

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / 'openapi.json'
TARGET = HERE / 'api.md'
METHODS = ['get', 'post', 'put', 'patch', 'delete', 'head', 'options', 'trace']


def anchor(number):
    return 's' + number.replace('.', '-')


def sort_key(number):
    return tuple(int(part) for part in number.split('.'))


def resolve(doc, node):
    """Follows a local `$ref` to the object it names."""
    while isinstance(node, dict) and '$ref' in node:
        target = doc
        for part in node['$ref'].lstrip('#/').split('/'):
            target = target[part]
        node = target
    return node


def ref_name(node):
    return node['$ref'].rsplit('/', 1)[-1]


def type_text(schema):
    """A short human form of a schema: `string`, `integer | null`, [Channel](#schema-channel), ..."""
    if not isinstance(schema, dict) or not schema:
        return 'any'
    if '$ref' in schema:
        name = ref_name(schema)
        return f'[{name}](#schema-{name.lower()})'
    if 'const' in schema:
        return f'`{json.dumps(schema["const"])}`'
    if 'enum' in schema:
        return ' \\| '.join(f'`{json.dumps(value) if not isinstance(value, str) else value}`'
                            for value in schema['enum'])
    for combiner in ('anyOf', 'oneOf', 'allOf'):
        if combiner in schema:
            joiner = ' and ' if combiner == 'allOf' else ' \\| '
            return joiner.join(type_text(part) for part in schema[combiner])
    kind = schema.get('type', 'any')
    kinds = kind if isinstance(kind, list) else [kind]
    out = []
    for k in kinds:
        if k == 'array':
            out.append(f'array of {type_text(schema.get("items", {}))}')
        else:
            out.append(k)
    return ' \\| '.join(out)


def cell(text):
    return ' '.join(str(text).split()).replace('|', '\\|') if text else ''


def schema_fields(doc, schema):
    """(name, type, required, description) of an object schema's properties, following allOf."""
    schema = resolve(doc, schema)
    rows = []
    for part in schema.get('allOf', []):
        rows.extend(schema_fields(doc, part))
    required = set(schema.get('required', []))
    for name, prop in schema.get('properties', {}).items():
        rows.append((name, type_text(prop), name in required, resolve(doc, prop).get('description', '')
                     if '$ref' not in prop else prop.get('description', '')))
    return rows


def fields_table(fields, required_mark, lines):
    """A table of `schema_fields` rows; says whether there was any."""
    if not fields:
        return False
    lines.append('| Field | Type | Meaning |')
    lines.append('|---|---|---|')
    for name, kind, required, description in fields:
        mark = required_mark if required else ''
        lines.append(f'| `{name}`{mark} | {kind} | {cell(description)} |')
    lines.append('')
    return True


def security_text(doc, requirements):
    if requirements is None:
        requirements = doc.get('security', [])
    if not requirements or requirements == [{}]:
        return 'none'
    forms = []
    for requirement in requirements:
        if not requirement:
            forms.append('none')
        else:
            schemes = doc['components']['securitySchemes']
            forms.append(' + '.join(f'`{schemes[name]["name"]}` {schemes[name]["in"]}' for name in requirement))
    return ', or '.join(forms)


def render_operation(doc, path, method, operation, lines):
    number = operation.get('x-section')
    label = f'§{number} ' if number else ''
    lines.append(f'#### {label}`{method.upper()} {path}` — {operation.get("summary", "")}')
    lines.append('')
    if operation.get('description'):
        lines.append(operation['description'])
        lines.append('')
    lines.append(f'Keys: {security_text(doc, operation.get("security"))}.')
    lines.append('')
    parameters = [resolve(doc, p) for p in operation.get('parameters', [])]
    if parameters:
        lines.append('| Parameter | In | Type | Meaning |')
        lines.append('|---|---|---|---|')
        for p in parameters:
            name = f'`{p["name"]}`' + (' (required)' if p.get('required') and p['in'] != 'path' else '')
            lines.append(f'| {name} | {p["in"]} | {type_text(p.get("schema", {}))} | '
                         f'{cell(p.get("description", ""))} |')
        lines.append('')
    body = resolve(doc, operation.get('requestBody')) if operation.get('requestBody') else None
    if body:
        types = ', '.join(f'`{t}`' for t in body.get('content', {}))
        schema = next(iter(body['content'].values())).get('schema', {})
        lines.append(f'Request body ({types}): {type_text(schema)}. {cell(body.get("description", ""))}')
        lines.append('')
        fields_table(schema_fields(doc, schema), ' (required)', lines)
    lines.append('| Status | Body | Meaning |')
    lines.append('|---|---|---|')
    for status, response in operation.get('responses', {}).items():
        response = resolve(doc, response)
        bodies = []
        for media, content in response.get('content', {}).items():
            bodies.append(f'{type_text(content.get("schema", {}))} (`{media}`)')
        headers = response.get('headers', {})
        meaning = cell(response.get('description', ''))
        if headers:
            meaning += ' Headers: ' + ', '.join(f'`{h}`' for h in headers) + '.'
        lines.append(f'| {status} | {"; ".join(bodies) or "empty"} | {meaning} |')
    lines.append('')


def render_path(doc, path, item, lines):
    number = item.get('x-section')
    methods = [m for m in METHODS if m in item]
    heading = f'### §{number} {item.get("summary", "")} — `{path}`' if number else f'### `{path}`'
    if number:
        lines.append(f'<a id="{anchor(number)}-{slug(path)}"></a>')
    lines.append(heading)
    lines.append('')
    callers = item.get('x-callers')
    lines.append('Methods: ' + ', '.join(f'`{m.upper()}`' for m in methods) + '.'
                 + (f' Callers: {callers.replace("*", chr(92) + "*")}.' if callers else ''))
    lines.append('')
    if item.get('description'):
        lines.append(item['description'])
        lines.append('')
    parameters = [resolve(doc, p) for p in item.get('parameters', [])]
    if parameters:
        lines.append('Path parameters: ' + '; '.join(
            f'`{p["name"]}` ({type_text(p.get("schema", {}))}): {p.get("description", "").rstrip(".")}'
            for p in parameters) + '.')
        lines.append('')
    for method in methods:
        render_operation(doc, path, method, item[method], lines)


def slug(path):
    return re.sub(r'[^a-z0-9]+', '-', path.lower()).strip('-')


def split_subsections(text):
    """The preamble of a tag's text and its `### §N.M` subsections: [(number, markdown)]."""
    parts = re.split(r'^(?=### §\d+(?:\.\d+)?\b)', text, flags=re.M)
    preamble = parts[0].strip()
    subsections = []
    for part in parts[1:]:
        number = re.match(r'### §(\d+(?:\.\d+)?)', part).group(1)
        subsections.append((number, part.strip()))
    return preamble, subsections


def link_sections(markdown, known):
    """Turns `§N.M` in running text (not in code or headings) into links to the numbered headings."""
    out = []
    fenced = False
    for line in markdown.split('\n'):
        if line.startswith('```'):
            fenced = not fenced
            out.append(line)
            continue
        if fenced or line.startswith('#') or line.startswith('<a id='):
            out.append(line)
            continue
        pieces = re.split(r'(`[^`]*`)', line)
        for i, piece in enumerate(pieces):
            if i % 2 == 0:
                pieces[i] = re.sub(
                    r'(?<!\[)§(\d+(?:\.\d+)?)',
                    lambda m: f'[§{m.group(1)}](#{anchor(m.group(1))})' if m.group(1) in known else m.group(0),
                    piece)
        out.append(''.join(pieces))
    return '\n'.join(out)


def render(doc):
    info = doc['info']
    lines = [
        f'# {info["title"]}',
        '',
        '<!-- Generated from docs/openapi.json by docs/render_api.py: edit the JSON, then run '
        '`python3 docs/render_api.py`. -->',
        '',
        f'OpenAPI {doc["openapi"]} document: [`docs/openapi.json`](openapi.json), served by the server at '
        '`GET /v1.1/openapi.json`. Version {version}.'.replace('{version}', info['version']),
        '',
        info.get('description', ''),
        '',
    ]
    tags = doc.get('tags', [])
    paths = doc['paths']

    lines.append('## Contents')
    lines.append('')
    lines.append(f'1. [Endpoint index](#{anchor("1")})')
    for tag in tags:
        lines.append(f'{tag["x-section"]}. [{tag.get("x-title", tag["name"])}](#{anchor(tag["x-section"])})')
    lines.append(f'- [Schemas](#schemas)')
    lines.append(f'- [Keys (security schemes)](#keys)')
    lines.append('')

    # §1: every path and its methods, in section order.
    lines.append(f'<a id="{anchor("1")}"></a>')
    lines.append('## §1 Endpoint index')
    lines.append('')
    lines.append('Every path is shown with the trailing slash Syncano clients use; the same path without it is '
                 'served identically (§2.1). `HEAD` is answered wherever `GET` is.')
    lines.append('')
    if info.get('x-callers-legend'):
        lines.append(info['x-callers-legend'])
        lines.append('')
    lines.append('| Method(s) | Path | Callers | § |')
    lines.append('|---|---|---|---|')
    ordered = sorted(paths.items(), key=lambda kv: sort_key(kv[1].get('x-section', '99')))
    for path, item in ordered:
        methods = [m for m in METHODS if m in item]
        callers = item.get('x-callers', '').replace('*', '\\*')
        number = item.get('x-section', '')
        target = f'[§{number}](#{anchor(number)}-{slug(path)})' if number else ''
        lines.append(f'| {" ".join(m.upper() for m in methods)} | `{path}` | {callers} | {target} |')
    lines.append('')

    for tag in tags:
        number = tag['x-section']
        lines.append(f'<a id="{anchor(number)}"></a>')
        lines.append(f'## §{number} {tag.get("x-title", tag["name"])}')
        lines.append('')
        preamble, subsections = split_subsections(tag.get('description', ''))
        if preamble:
            lines.append(preamble)
            lines.append('')
        entries = [(sort_key(n), 0, i, ('text', n, text)) for i, (n, text) in enumerate(subsections)]
        for i, (path, item) in enumerate(paths.items()):
            operations = [item[m] for m in METHODS if m in item]
            if operations and operations[0].get('tags', [None])[0] == tag['name']:
                n = item.get('x-section', number)
                entries.append((sort_key(n), 1, i, ('path', path, item)))
        for _, _, _, (kind, a, b) in sorted(entries, key=lambda e: e[:3]):
            if kind == 'text':
                lines.append(b)
                lines.append('')
            else:
                render_path(doc, a, b, lines)

    lines.append('<a id="schemas"></a>')
    lines.append('## Schemas')
    lines.append('')
    lines.append('Objects may lack any key when `fields` / `excluded_fields` shape them (§2.5).')
    lines.append('')
    for name, schema in doc['components']['schemas'].items():
        lines.append(f'<a id="schema-{name.lower()}"></a>')
        lines.append(f'### {name}')
        lines.append('')
        if schema.get('description'):
            lines.append(schema['description'])
            lines.append('')
        if 'allOf' in schema and 'properties' not in schema:
            lines.append(f'Type: {type_text(schema)}' + (', with the keys ' + ', '.join(
                f'`{key}`' for key in schema['required']) + ' always present.' if schema.get('required') else '.'))
            lines.append('')
        elif not fields_table(schema_fields(doc, schema), ' (always)', lines) and 'properties' not in schema:
            lines.append(f'Type: {type_text(schema)}.')
            lines.append('')
        if schema.get('additionalProperties') not in (None, False):
            extra = schema['additionalProperties']
            text = 'any' if extra is True else type_text(extra)
            lines.append(f'Other keys: {text}.')
            lines.append('')
        for example in schema.get('examples', []):
            lines.append('```json')
            lines.append(json.dumps(example, ensure_ascii=False))
            lines.append('```')
            lines.append('')

    lines.append('<a id="keys"></a>')
    lines.append('## Keys (security schemes)')
    lines.append('')
    lines.append('| Scheme | Sent as | Meaning |')
    lines.append('|---|---|---|')
    for name, scheme in doc['components']['securitySchemes'].items():
        lines.append(f'| `{name}` | {scheme["in"]} `{scheme["name"]}` | {cell(scheme.get("description", ""))} |')
    lines.append('')
    lines, known = anchor_headings(lines)
    text = '\n'.join(lines)
    text = re.sub(r'\n{3,}', '\n\n', text)
    return link_sections(text, known).rstrip('\n') + '\n'


def anchor_headings(lines):
    """Gives the first heading of each section number a fixed anchor (`#s9-8` for §9.8), so that
    headings inside descriptions (`#### §9.9 ...`) answer links too. Returns the numbers."""
    text = '\n'.join(lines)
    known = set(re.findall(r'<a id="s(\d+(?:-\d+)?)"></a>', text))
    known = {k.replace('-', '.') for k in known}
    out = []
    fenced = False
    for line in text.split('\n'):
        if line.startswith('```'):
            fenced = not fenced
        m = None if fenced else re.match(r'^#{2,6} §(\d+(?:\.\d+)?)\b', line)
        if m and m.group(1) not in known:
            known.add(m.group(1))
            out.append(f'<a id="{anchor(m.group(1))}"></a>')
        out.append(line)
    return out, known


def main():
    doc = json.loads(SOURCE.read_text(encoding='utf-8'))
    rendered = render(doc)
    if '--check' in sys.argv[1:]:
        current = TARGET.read_text(encoding='utf-8') if TARGET.exists() else ''
        if current != rendered:
            print(f'{TARGET.relative_to(HERE.parent)} is out of date: run python3 docs/render_api.py',
                  file=sys.stderr)
            return 1
        print(f'{TARGET.relative_to(HERE.parent)} is up to date')
        return 0
    TARGET.write_text(rendered, encoding='utf-8')
    return 0


if __name__ == '__main__':
    sys.exit(main())
