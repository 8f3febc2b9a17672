/**
 * Commit messages from Flux's `messageTemplate`: Flux's TemplateData modelled as Go types
 * (`.AutomationObject`, `.Updated` with `Files`/`Objects`/`Images`, `.Changed` with `FileChanges`/
 * `Objects`/`Changes`, `.Values`), built from the setters' updates the way the image-automation-
 * controller builds it, and rendered by the Go template engine in gotemplate.ts. Templates are
 * compiled (parsed and type-checked) when the automation is loaded. Where Flux ranges over Go maps in
 * random order to build `.Updated.Images` and `.Changed.Changes`, we go by sorted file and object.
 */
import { SluiceError } from "../core/index.js";
import {
  compileGoTemplate,
  FUNCTION_NAMES,
  type GoMap,
  type GoStruct,
  type GoType,
  STRING,
  sortedEntries,
  TemplateExecError,
  TemplateSyntaxError,
  type TV,
} from "./gotemplate.js";
import { templateImageRef } from "./imageref.js";
import type { ObjectIdentifier, SetterUpdate } from "./types.js";

/** Flux's message when `messageTemplate` is empty or unset. */
export const DEFAULT_MESSAGE_TEMPLATE = "Update from image update automation";

// --- Flux's template data as Go types (pkg/update/result.go, kyaml, apimachinery) -----------

const NAMESPACED_NAME: GoType = {
  k: "struct",
  name: "types.NamespacedName",
  fields: { Namespace: STRING, Name: STRING },
  printed: ["Namespace", "Name"],
  stringer: (v) => `${v.Namespace}/${v.Name}`,
};
const IMAGE_REF: GoType = {
  k: "struct",
  name: "update.ImageRef",
  fields: {
    String: STRING,
    Identifier: STRING,
    Repository: STRING,
    Registry: STRING,
    Name: STRING,
    Policy: NAMESPACED_NAME,
  },
  printed: [],
  stringer: (v) => String(v.String),
};
const TYPE_META: GoType = {
  k: "struct",
  name: "yaml.TypeMeta",
  fields: { APIVersion: STRING, Kind: STRING },
  printed: ["APIVersion", "Kind"],
};
const NAME_META: GoType = {
  k: "struct",
  name: "yaml.NameMeta",
  fields: { Name: STRING, Namespace: STRING },
  printed: ["Name", "Namespace"],
};
const RESOURCE_IDENTIFIER: GoType = {
  k: "struct",
  name: "yaml.ResourceIdentifier",
  fields: {
    TypeMeta: TYPE_META,
    NameMeta: NAME_META,
    APIVersion: STRING,
    Kind: STRING,
    Name: STRING,
    Namespace: STRING,
  },
  printed: ["TypeMeta", "NameMeta"],
};
const OBJECT_IDENTIFIER: GoType = {
  k: "struct",
  name: "update.ObjectIdentifier",
  fields: { ...RESOURCE_IDENTIFIER.fields, ResourceIdentifier: RESOURCE_IDENTIFIER },
  printed: ["ResourceIdentifier"],
};
const CHANGE: GoType = {
  k: "struct",
  name: "update.Change",
  fields: { OldValue: STRING, NewValue: STRING, Setter: STRING },
  printed: ["OldValue", "NewValue", "Setter"],
};
const IMAGE_REFS: GoType = { k: "slice", name: "[]update.ImageRef", elem: IMAGE_REF };
const CHANGES: GoType = { k: "slice", name: "[]update.Change", elem: CHANGE };
const OBJECT_IMAGES: GoMap = {
  k: "map",
  name: "map[update.ObjectIdentifier][]update.ImageRef",
  key: OBJECT_IDENTIFIER,
  elem: IMAGE_REFS,
};
const OBJECT_CHANGES: GoMap = {
  k: "map",
  name: "update.ObjectChanges",
  key: OBJECT_IDENTIFIER,
  elem: CHANGES,
};
const FILE_RESULT: GoType = {
  k: "struct",
  name: "update.FileResult",
  fields: { Objects: OBJECT_IMAGES },
  printed: ["Objects"],
};
const FILES: GoMap = { k: "map", name: "map[string]update.FileResult", key: STRING, elem: FILE_RESULT };
const FILE_CHANGES: GoMap = {
  k: "map",
  name: "map[string]update.ObjectChanges",
  key: STRING,
  elem: OBJECT_CHANGES,
};
const RESULT: GoType = {
  k: "struct",
  name: "update.Result",
  fields: {
    Files: FILES,
    Images: IMAGE_REFS,
    Objects: OBJECT_IMAGES,
  },
  printed: ["Files"],
};
const RESULT_V2: GoType = {
  k: "struct",
  name: "update.ResultV2",
  fields: {
    ImageResult: RESULT,
    FileChanges: FILE_CHANGES,
    Changes: CHANGES,
    Objects: OBJECT_CHANGES,
  },
  printed: ["ImageResult", "FileChanges"],
};
const TEMPLATE_DATA: GoType = {
  k: "struct",
  name: "TemplateData",
  fields: {
    AutomationObject: NAMESPACED_NAME,
    Updated: RESULT,
    Changed: RESULT_V2,
    Values: { k: "map", name: "map[string]string", key: STRING, elem: STRING },
  },
  printed: ["AutomationObject", "Updated", "Changed", "Values"],
};

// --- data -----------------------------------------------------------------------------------

/** What a commit message is rendered from. */
export interface MessageData {
  automation: { namespace: string; name: string };
  updates: readonly SetterUpdate[];
  /** Directory (repository-relative, `.` for the root) that file names are given relative to, as Flux does. */
  updatePath?: string;
  values?: Readonly<Record<string, string>>;
}

function objectKey(o: ObjectIdentifier): string {
  return JSON.stringify([o.apiVersion, o.kind, o.name, o.namespace]);
}

function goObject(o: ObjectIdentifier): GoStruct {
  const TypeMeta = { APIVersion: o.apiVersion, Kind: o.kind };
  const NameMeta = { Name: o.name, Namespace: o.namespace };
  const ResourceIdentifier = { TypeMeta, NameMeta, ...TypeMeta, ...NameMeta };
  return { ResourceIdentifier, TypeMeta, NameMeta, ...TypeMeta, ...NameMeta };
}

function relativeTo(dir: string, file: string): string {
  const d = dir.replace(/^\.\/?/, "").replace(/\/+$/, "");
  if (d === "" || d === ".") return file;
  if (file === d) return file.slice(file.lastIndexOf("/") + 1);
  return file.startsWith(`${d}/`) ? file.slice(d.length + 1) : file;
}

/** Builds Flux's TemplateData (`.AutomationObject`, `.Updated`, `.Changed`, `.Values`). */
function templateData(d: MessageData): TV {
  const objects = new Map<string, GoStruct>();
  const refs = new Map<string, GoStruct>();
  const changes = new Map<string, GoStruct>();
  const obj = (o: ObjectIdentifier) => {
    const k = objectKey(o);
    if (!objects.has(k)) objects.set(k, goObject(o));
    return objects.get(k)!;
  };
  const ref = (image: string, policy: string) => {
    const k = `${policy} ${image}`;
    if (!refs.has(k)) {
      const r = templateImageRef(image, policy);
      refs.set(k, { ...r, Policy: { ...r.Policy } });
    }
    return refs.get(k)!;
  };
  const change = (u: SetterUpdate) => {
    const k = JSON.stringify([u.from, u.to, u.setter]);
    if (!changes.has(k)) changes.set(k, { OldValue: u.from, NewValue: u.to, Setter: u.setter });
    return changes.get(k)!;
  };
  // file → object → refs (deduplicated per object) and changes (all).
  const files = new Map<string, { Objects: Map<GoStruct, GoStruct[]> }>();
  const fileChanges = new Map<string, Map<GoStruct, GoStruct[]>>();
  const dir = d.updatePath ?? ".";
  for (const u of d.updates) {
    const name = relativeTo(dir, u.file);
    const o = obj(u.object);
    if (!files.has(name)) files.set(name, { Objects: new Map() });
    const fr = files.get(name)!.Objects;
    const list = fr.get(o) ?? [];
    const r = ref(u.image, u.policy);
    if (!list.includes(r)) list.push(r);
    fr.set(o, list);
    if (!fileChanges.has(name)) fileChanges.set(name, new Map());
    const fc = fileChanges.get(name)!;
    fc.set(o, [...(fc.get(o) ?? []), change(u)]);
  }
  // Flux's Images()/Objects()/Changes() projections, walking files and objects in Go's sorted order.
  type ObjectMap = Map<GoStruct, GoStruct[]>;
  const images: GoStruct[] = [];
  const allObjects: ObjectMap = new Map();
  for (const [, fr] of sortedEntries(FILES, files)) {
    for (const [o, list] of sortedEntries(OBJECT_IMAGES, (fr as { Objects: ObjectMap }).Objects)) {
      const refs = list as GoStruct[];
      for (const r of refs) if (!images.includes(r)) images.push(r);
      allObjects.set(o as GoStruct, [...(allObjects.get(o as GoStruct) ?? []), ...refs]);
    }
  }
  const allChanges: GoStruct[] = [];
  const changedObjects: ObjectMap = new Map();
  for (const [, fc] of sortedEntries(FILE_CHANGES, fileChanges)) {
    for (const [o, list] of sortedEntries(OBJECT_CHANGES, fc as ObjectMap)) {
      for (const c of list as GoStruct[]) if (!allChanges.includes(c)) allChanges.push(c);
      changedObjects.set(o as GoStruct, list as GoStruct[]);
    }
  }
  const updated = { Files: files, Images: images, Objects: allObjects };
  const data: GoStruct = {
    AutomationObject: { Namespace: d.automation.namespace, Name: d.automation.name },
    Updated: updated,
    Changed: { ImageResult: updated, FileChanges: fileChanges, Changes: allChanges, Objects: changedObjects },
    Values: new Map(Object.entries(d.values ?? {})),
  };
  return { t: TEMPLATE_DATA, v: data };
}

// --- public API -----------------------------------------------------------------------------

/** A parsed, type-checked commit message template. */
export interface MessageTemplate {
  readonly source: string;
  /** @throws SluiceError ConfigInvalid when the template fails while running (e.g. wrong type through a variable). */
  render(data: MessageData): string;
}

/**
 * Parses and checks a `messageTemplate` (Flux's default when empty or unset).
 * @throws SluiceError ConfigInvalid naming the line and column of the first problem.
 * @example
 *   compileMessageTemplate("{{range .Updated.Images}}{{println .}}{{end}}").render(data)
 */
export function compileMessageTemplate(source: string | undefined): MessageTemplate {
  const src = source === undefined || source === "" ? DEFAULT_MESSAGE_TEMPLATE : source;
  let compiled: ReturnType<typeof compileGoTemplate>;
  try {
    compiled = compileGoTemplate(src, TEMPLATE_DATA);
  } catch (e) {
    if (!(e instanceof TemplateSyntaxError)) throw e;
    throw new SluiceError("ConfigInvalid", `messageTemplate: ${e.message}`, {
      detail: { line: e.line, column: e.column },
      hint: `supported: .AutomationObject, .Updated.{Files,Objects,Images}, .Changed.{FileChanges,Objects,Changes}, .Values.<key>; if/else/with/range/end; functions ${FUNCTION_NAMES.join(", ")}`,
    });
  }
  return {
    source: src,
    render(data: MessageData): string {
      try {
        return compiled.execute(templateData(data));
      } catch (e) {
        if (e instanceof TemplateExecError) {
          throw new SluiceError("ConfigInvalid", `messageTemplate: ${e.message}`, {
            hint: "fix spec.git.commit.messageTemplate",
          });
        }
        throw e;
      }
    },
  };
}
