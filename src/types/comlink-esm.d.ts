// comlink's package.json points Node's ESM loader at its UMD build; these declare its ESM files,
// which this project imports directly, with the types the package ships.
declare module 'comlink/dist/esm/comlink.mjs' {
  export * from 'comlink';
}
declare module 'comlink/dist/esm/node-adapter.mjs' {
  import nodeEndpoint from 'comlink/dist/umd/node-adapter';
  export default nodeEndpoint;
}
