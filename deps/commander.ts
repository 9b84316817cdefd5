/**
 * Gateway to the command-line parser (commander with inferred option types). Swapping the parser
 * touches this file only.
 *
 * @module
 */
export { Command, CommanderError, InvalidArgumentError, Option } from "@commander-js/extra-typings";
