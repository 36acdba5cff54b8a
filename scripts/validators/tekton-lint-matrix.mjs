// Matrix-aware versions of two tekton-lint rules, loaded through the
// `custom:` section of .tektonlintrc.yaml.
//
// tekton-lint 1.1.0 predates `matrix`: it reports a task parameter that a
// pipeline task supplies through `matrix.params` (or `matrix.include`) as
// missing (no-missing-param), and `$(tasks.T.results.R[*])`, the array that
// a matrixed task's string result becomes, as an undefined result R[*]
// (no-undefined-result). Each rule here runs the original rule unchanged
// and drops exactly those reports; everything else it finds is reported
// as before.
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

// The tekton-lint that is running (bin: dist/lint.js) and its built-in rules.
const dist = new URL('./', pathToFileURL(realpathSync(process.argv[1])));
const builtin = async (name) => (await import(new URL(`rules/${name}.js`, dist))).default;
const noMissingParam = await builtin('no-missing-param');
const noUndefinedResult = await builtin('no-undefined-result');

const pipelineTasks = (pipeline) => [...(pipeline.spec.tasks ?? []), ...(pipeline.spec.finally ?? [])];

// Names of the parameters a pipeline task's matrix supplies.
const matrixParams = (task) => {
  const names = new Set((task.matrix?.params ?? []).map((p) => p.name));
  for (const include of task.matrix?.include ?? []) {
    for (const p of include.params ?? []) names.add(p.name);
  }
  return names;
};

const taskSpecOf = (tekton, task) => task.taskSpec ?? tekton.tasks[task.taskRef?.name]?.spec;

const missingParam = /^Pipeline '(.+?)' references task '.+?' (?:\(as '(.+?)'\), )?but parameter '(.+?)' is not supplied/;
const undefinedResult = /^In Pipeline '(.+?)' the value on path '.*?' refers to an undefined output result \(as '(.*?)' - '(.+?)' is not a result in Task '(.+?)'\)/;

function matrixAwareMissingParam(docs, tekton, report) {
  noMissingParam(docs, tekton, (message, node, prop) => {
    const m = message.match(missingParam);
    if (m) {
      const [, pipelineName, asName, param] = m;
      const pipeline = tekton.pipelines[pipelineName];
      const task = pipeline && pipelineTasks(pipeline).find((t) => t.name === asName);
      if (task && matrixParams(task).has(param)) return;
    }
    report(message, node, prop);
  });
}

function matrixAwareUndefinedResult(docs, tekton, report) {
  noUndefinedResult(docs, tekton, (message, node, prop) => {
    const m = message.match(undefinedResult);
    if (m) {
      const [, pipelineName, , name, taskName] = m;
      const whole = name.match(/^(.+)\[\*\]$/);
      const pipeline = tekton.pipelines[pipelineName];
      const task = pipeline && pipelineTasks(pipeline).find((t) => t.name === taskName);
      const spec = task && taskSpecOf(tekton, task);
      const result = whole && spec && (spec.results ?? []).find((r) => r.name === whole[1]);
      // R[*] is the whole array: an array result, or a matrixed task's result.
      if (result && (result.type === 'array' || task.matrix)) return;
    }
    report(message, node, prop);
  });
}

export default {
  rules: [
    { name: 'no-missing-param', ruleFn: matrixAwareMissingParam, reportDefault: 'error' },
    { name: 'no-undefined-result', ruleFn: matrixAwareUndefinedResult, reportDefault: 'error' },
  ],
};
